"""`opslib localcloud start|stop|status|env`: run localcloud and point clients at it.

Every `start` records its state directory in a per-user registry (`registry_path()`), so
`stop --all` can find each localcloud this user started through its state files, never by
process name, and a `start` whose port is taken can name the localcloud that holds it.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import ProxyHandler, build_opener

from opslib.localcloud import children

DEFAULT_PORT = 8780
DEFAULT_STATE = Path(os.environ.get("OPSLIB_LOCALCLOUD_STATE", ".localcloud"))
# Overrides where the registry of started localclouds lives (the tests point it at a temp file).
REGISTRY_ENV = "OPSLIB_REGISTRY"
# gcloud's override names for the APIs localcloud serves (gcloud appends v1/... itself).
GCLOUD_APIS = ("CLOUDSCHEDULER", "LOGGING", "SECRETMANAGER", "CLOUDBUILD", "RUN", "STORAGE")


_DETACHED: list[subprocess.Popen] = []


@atexit.register
def _reap_exited() -> None:
    """Collect the exit of every detached server that was stopped some other way (`stop --all`
    from another process, a kill): a live one is left running, a dead one is no zombie."""
    _DETACHED[:] = [process for process in _DETACHED if process.poll() is None]


@dataclass
class Running:
    """A localcloud process as its server.json (or its health route) describes it."""

    pid: int
    port: int
    url: str
    state: Path | None = None


class PortBusy(RuntimeError):
    """The port is taken: the one-line message says by whom and how to free or avoid it."""

    def __init__(self, port: int, by: Running | None) -> None:
        self.port, self.holder = port, by
        super().__init__(_busy_message(port, by))


def _busy_message(port: int, by: Running | None) -> str:
    """Who holds `port` and the command that frees it, so the user need not hunt for the pid."""
    if by is None:
        return (
            f"port {port} of 127.0.0.1 is in use by a program that is not a localcloud "
            "(no answer on /_localcloud/health); start on a free port with --port 0"
        )
    if by.state is None:
        return (
            f"port {port} is held by another localcloud (pid {by.pid}, state directory unknown); "
            f"stop it with `kill {by.pid}`, or start on a free port with --port 0"
        )
    return (
        f"port {port} is held by the localcloud of state {by.state} (pid {by.pid}); "
        f"stop it with `opslib localcloud stop --state {shlex.quote(str(by.state))}`, "
        "or start on a free port with --port 0"
    )


def _health(url: str) -> dict[str, Any] | None:
    """The health answer at `url` (loopback: never through a proxy), None if nothing answers."""
    opener = build_opener(ProxyHandler({}))
    try:
        with opener.open(f"{url}/_localcloud/health", timeout=2) as response:
            answer = json.loads(response.read())
    except (URLError, OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def read(state: Path = DEFAULT_STATE) -> Running | None:
    """The running localcloud for `state`, if it answers its health route."""
    info_path = Path(state) / "server.json"
    try:
        info = json.loads(info_path.read_text())
        pid, port, url = info["pid"], info["port"], info["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    answer = _health(url)
    if answer is not None and answer.get("pid") == pid:
        return Running(pid, port, url, Path(state).resolve())
    return None


def port_free(port: int) -> bool:
    """Whether localcloud could bind 127.0.0.1:port now (with SO_REUSEADDR, as the server does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def holder(port: int) -> Running | None:
    """The localcloud answering on 127.0.0.1:port (with its state directory when known), else None.

    None means the port is free or held by something that is not a localcloud; `port_free` tells
    those apart.
    """
    answer = _health(f"http://127.0.0.1:{port}")
    if answer is None or answer.get("status") != "ok" or not isinstance(answer.get("pid"), int):
        return None
    pid = answer["pid"]
    state = Path(answer["state"]) if answer.get("state") else _registered_state(pid)
    return Running(pid, port, answer.get("url") or f"http://127.0.0.1:{port}", state)


def check_port(port: int) -> None:
    """Raise PortBusy naming the holder when `port` (not 0) cannot be bound, before any start."""
    if port and not port_free(port):
        raise PortBusy(port, holder(port))


def pick_port(preferred: int = DEFAULT_PORT) -> int:
    """`preferred` when it is free, else 0 (any free port): another localcloud may hold 8780."""
    return preferred if port_free(preferred) else 0


def start(
    state: Path = DEFAULT_STATE,
    port: int = DEFAULT_PORT,
    detach: bool = True,
    timeout: float = 30.0,
) -> Running:
    """Start localcloud (or return the one already running on this state directory)."""
    state = Path(state).resolve()
    running = read(state)
    if running:
        return running
    check_port(port)
    state.mkdir(parents=True, exist_ok=True)
    (state / "server.json").unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "opslib.localcloud.server",
        "--port",
        str(port),
        "--state",
        str(state),
    ]
    if not detach:
        _register_quietly(state, os.getpid())  # exec keeps the pid
        os.execv(sys.executable, command)
    log = open(state / "server.log", "ab")  # noqa: SIM115 - handed to the child
    since = log.tell()  # the log is appended to: read only this start's part
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    _DETACHED.append(process)  # the server outlives this handle; keep it from being reaped early
    _register_quietly(state, process.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(state / "server.log", "rb") as written:
                written.seek(since)
                tail = written.read().decode(errors="replace")[-2000:]
            if port and "Address already in use" in tail:
                raise PortBusy(port, holder(port))  # taken between our check and its bind
            raise RuntimeError(f"localcloud exited with {process.returncode}:\n{tail}")
        running = read(state)
        if running:
            return running
        time.sleep(0.05)
    process.kill()
    process.wait()
    _DETACHED.remove(process)
    raise RuntimeError(f"localcloud did not answer within {timeout:.0f}s; see {state}/server.log")


def stop(state: Path = DEFAULT_STATE, timeout: float = 20.0) -> bool:
    """SIGTERM the server (it stops its instances first); False if none was running."""
    return stop_with_leftovers(state, timeout)[0]


def stop_with_leftovers(
    state: Path = DEFAULT_STATE, timeout: float = 20.0
) -> tuple[bool, list[str]]:
    """`stop`, then whatever a server on `state` that was killed left running (its instances
    and tasks, from its record of them): whether a server was stopped, and what else was."""
    running = read(state)
    if running is not None:
        _terminate(running, timeout)
    if _alive_on(state):
        return running is not None, []  # still shutting down, or not ours to clean after
    return running is not None, children.stop_leftovers(state)


def _alive_on(state: Path) -> bool:
    """Whether the server that last wrote `state`'s server.json still lives (not answering)."""
    try:
        pid = json.loads((Path(state) / "server.json").read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(pid, int) and _alive(pid)


def _terminate(running: Running, timeout: float) -> None:
    """SIGTERM, wait for the exit (reaping our own child), SIGKILL its group if it lingers."""
    try:
        os.kill(running.pid, signal.SIGTERM)
    except ProcessLookupError:  # exited since its health answer
        _reap_exited()
        return
    child = next((p for p in _DETACHED if p.pid == running.pid), None)
    if child is not None:  # started by this process: reap it
        try:
            child.wait(timeout)
            _DETACHED.remove(child)
            return
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(running.pid):
            return
        time.sleep(0.05)
    with suppress(ProcessLookupError):
        os.killpg(running.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie has exited even if nobody reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def registry_path() -> Path:
    """This user's list of started localclouds: $OPSLIB_REGISTRY, else under XDG_STATE_HOME."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "opslib" / "localclouds.json"


def _load(path: Path) -> dict[str, dict[str, Any]]:
    """The registry's entries (state directory -> {pid, registered}); a damaged file reads empty."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, dict)}


@contextmanager
def _locked_registry() -> Iterator[dict[str, dict[str, Any]]]:
    """The registry's entries to change under an exclusive lock, written back by rename."""
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent starts wait here; released on close
        entries = _load(path)
        yield entries
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(entries, out, indent=1, sort_keys=True)
            os.replace(temporary, path)  # readers see the old file or the new, never half
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def register(state: Path, pid: int) -> None:
    """Record that `pid` serves `state`; entries whose state directory is gone are dropped."""
    with _locked_registry() as entries:
        for gone in [key for key in entries if not Path(key).is_dir()]:
            del entries[gone]
        entries[str(Path(state).resolve())] = {"pid": pid, "registered": time.time()}


def _register_quietly(state: Path, pid: int) -> None:
    """Register, but let a read-only home (some CI runners) still run localcloud."""
    with suppress(OSError):
        register(state, pid)


def registered() -> list[Path]:
    """The state directories in the registry, whether or not their localcloud still runs."""
    return [Path(key) for key in _load(registry_path())]


def _registered_state(pid: int) -> Path | None:
    """The registered state directory whose server.json names `pid` (old servers' health)."""
    for state in registered():
        try:
            if json.loads((state / "server.json").read_text()).get("pid") == pid:
                return state
        except (OSError, ValueError, AttributeError):
            continue
    return None


def prune() -> list[Path]:
    """Drop entries whose localcloud neither answers nor lives; the state directories dropped."""
    entries = _load(registry_path())
    dead = {
        key: entry.get("pid")
        for key, entry in entries.items()
        if read(Path(key)) is None
        and not (isinstance(entry.get("pid"), int) and _alive(entry["pid"]))
    }
    if not dead:
        return []
    dropped = []
    with _locked_registry() as current:
        for key, pid in dead.items():  # unless a start re-registered it meanwhile
            if key in current and current[key].get("pid") == pid:
                del current[key]
                dropped.append(Path(key))
    return dropped


def stop_all(timeout: float = 20.0) -> list[Running]:
    """Stop every registered localcloud that answers its health route, then prune the registry."""
    stopped = []
    for state in registered():
        running = read(state)
        if running is not None:
            _terminate(running, timeout)
            stopped.append(running)
        if not _alive_on(state):
            children.stop_leftovers(state)
    prune()
    return stopped


def environment(url: str) -> dict[str, str]:
    """Variables that point gcloud and the Google client libraries at localcloud."""
    env = {f"CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}": f"{url}/" for api in GCLOUD_APIS}
    env.update(
        {
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "STORAGE_EMULATOR_HOST": url,
            "GOOGLE_CLOUD_DISABLE_GRPC": "true",
            "OPSLIB_LOCALCLOUD_URL": url,
        }
    )
    return env
