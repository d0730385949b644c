"""Run a service folder under a real gunicorn on 127.0.0.1, as its Dockerfile would on Cloud Run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from opslib.core.errors import OpslibError


def free_port() -> int:
    """A port the OS says is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command(app: str = "batch_endpoint:app") -> list[str]:
    """gunicorn from this interpreter's environment, with the service's own config file."""
    return [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", app]


def spawn(
    service_dir: Path,
    port: int,
    *,
    app: str = "batch_endpoint:app",
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> subprocess.Popen:
    """Start gunicorn in `service_dir` bound to 127.0.0.1:port (loopback only, unlike 0.0.0.0)."""
    child_env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [*gunicorn_command(app), "--bind", f"127.0.0.1:{port}"]
    if log_path is None:
        return subprocess.Popen(
            command,
            cwd=service_dir,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
    with open(log_path, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command, cwd=service_dir, env=child_env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 30.0) -> float:
    """Seconds until GET /health answers 200; raises if the process dies or time runs out."""
    start = time.perf_counter()
    url = f"http://127.0.0.1:{port}/health"
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise OpslibError(
                "gunicorn",
                f"exited with code {process.returncode} before answering /health",
                "read its log output above",
            )
        try:
            with urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except (URLError, ConnectionError, OSError):
            time.sleep(0.005)
    raise OpslibError("gunicorn", f"no 200 on {url} within {timeout:.0f}s", "check the app")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (what Cloud Run sends), then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serving(
    service_dir: Path, *, env: dict[str, str] | None = None, log_path: Path | None = None
) -> Iterator[str]:
    """The base URL of the service running under gunicorn, for the duration of the block."""
    port = free_port()
    process = spawn(service_dir, port, env=env, log_path=log_path)
    try:
        wait_healthy(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
