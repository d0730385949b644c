"""One kernel for all the step notebooks of a run, with a fresh namespace for each notebook.

papermill starts a kernel per notebook; every step would then pay the interpreter start and the
imports of pandas and the Google clients again (about a second each here). The runner instead
starts one kernel and one client, runs every notebook on them through a papermill engine, and
clears the namespace before each notebook with IPython's `%reset -f`, so a notebook cannot lean
on a variable another one defined, exactly as when it runs alone. IPC sockets instead of TCP:
nothing listens on a port, and the kernel's warning about unencrypted TCP goes away.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

ENGINE = "opslib-warm-kernel"
_RESET = "%reset -f\nget_ipython().execution_count = 1\n"
# Imported while the runner copies the service and starts localcloud, not inside step 1.
# (`opslib.fleet.steps` imports every step module and the doctor's explain.)
_WARM = "import opslib.fleet.steps"


class WarmKernel:
    """A started kernel and its client, which papermill runs notebook after notebook on."""

    def __init__(self, cwd: Path, kernel_name: str = "python3") -> None:
        self._runtime = tempfile.TemporaryDirectory(prefix="opslib-kernel-")
        self.manager = AsyncKernelManager(
            kernel_name=kernel_name,
            transport="ipc",
            connection_file=str(Path(self._runtime.name) / "kernel.json"),
        )
        self.manager.ip = str(Path(self._runtime.name) / "ipc")
        # exec_lines run in the kernel before it is ready: they overlap the runner's own work.
        run_sync(self.manager.start_kernel)(
            cwd=str(cwd), extra_arguments=[f"--IPKernelApp.exec_lines={[_WARM]!r}"]
        )
        self.client = self.manager.client()
        self.client.start_channels()
        self._ready = False
        self.environment: dict[str, str] = {}  # set in the kernel's os.environ at each reset

    def reset(self) -> None:
        """A clean namespace and execution count, as a newly started kernel has."""
        if not self._ready:
            run_sync(self.client.wait_for_ready)(timeout=120)
            self._ready = True
        code = _RESET + f"__import__('os').environ.update({self.environment!r})\n"
        reply = run_sync(self.client.execute_interactive)(
            code, silent=True, store_history=False, timeout=60
        )
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"kernel reset failed: {reply['content']}")

    def engine_kwargs(self) -> dict[str, Any]:
        """What papermill.execute_notebook needs to run on this kernel."""
        return {"engine_name": ENGINE, "warm_kernel": self}

    def close(self) -> None:
        self.client.stop_channels()
        if run_sync(self.manager.is_alive)():
            run_sync(self.manager.shutdown_kernel)(now=True)
        self._runtime.cleanup()

    def __enter__(self) -> WarmKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WarmKernelEngine(NBClientEngine):
    """papermill's nbclient engine, on a kernel and client it neither starts nor stops."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: int | None = None,
        **kwargs: Any,
    ) -> Any:
        # The same argument handling as NBClientEngine.execute_managed_notebook (papermill 2.7).
        warm: WarmKernel = kwargs.pop("warm_kernel")
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(
            safe_kwargs,
            timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=logger,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        client = PapermillNotebookClient(nb_man, km=warm.manager, **final_kwargs)
        client.kc = warm.client  # nbclient starts no client when it has one, and keeps it
        return client.execute()


papermill_engines.register(ENGINE, WarmKernelEngine)
