"""`opslib localcloud start|stop|status|env`: run localcloud and point clients at it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

DEFAULT_PORT = 8780
DEFAULT_STATE = Path(os.environ.get("OPSLIB_LOCALCLOUD_STATE", ".localcloud"))
# gcloud's override names for the APIs localcloud serves (gcloud appends v1/... itself).
GCLOUD_APIS = ("CLOUDSCHEDULER", "LOGGING", "SECRETMANAGER", "CLOUDBUILD", "RUN", "STORAGE")


_DETACHED: list[subprocess.Popen] = []


@dataclass
class Running:
    """A localcloud process as its server.json describes it."""

    pid: int
    port: int
    url: str


def read(state: Path = DEFAULT_STATE) -> Running | None:
    """The running localcloud for `state`, if it answers its health route."""
    info_path = Path(state) / "server.json"
    if not info_path.exists():
        return None
    info = json.loads(info_path.read_text())
    try:
        with urlopen(f"{info['url']}/_localcloud/health", timeout=2) as response:
            if json.loads(response.read()).get("pid") == info["pid"]:
                return Running(info["pid"], info["port"], info["url"])
    except (URLError, OSError, ValueError):
        pass
    return None


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
        os.execv(sys.executable, command)
    log = open(state / "server.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    _DETACHED.append(process)  # the server outlives this handle; keep it from being reaped early
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (state / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"localcloud exited with {process.returncode}:\n{tail}")
        running = read(state)
        if running:
            return running
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"localcloud did not answer within {timeout:.0f}s; see {state}/server.log")


def stop(state: Path = DEFAULT_STATE, timeout: float = 20.0) -> bool:
    """SIGTERM the server (it stops its instances first); False if none was running."""
    running = read(state)
    if running is None:
        return False
    os.kill(running.pid, signal.SIGTERM)
    child = next((p for p in _DETACHED if p.pid == running.pid), None)
    if child is not None:  # started by this process: reap it
        try:
            child.wait(timeout)
            _DETACHED.remove(child)
            return True
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(running.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.killpg(running.pid, signal.SIGKILL)
    return True


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
