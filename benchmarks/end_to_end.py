"""End to end: wall time of `opslib run parameters/example.yaml` on localcloud, against its floor.

The floor (issue 5), measured in the same run and interleaved with the runs: five empty
notebooks through papermill's Python API in one process (a fresh interpreter, as `opslib run`
is one) plus one cold start of a bare Flask app under the same gunicorn. Two opslib figures:

- first run: a fresh localcloud state and a fresh runs/ folder, so localcloud starts, the
  image is built, the service deployed and the job created — what `make demo` does on a new
  machine;
- second run: the same again on that state — every step plans "no change", verify runs.

Target: <= 2.0x the floor, and under 15 s on this 2-core machine.

    .venv/bin/python benchmarks/end_to_end.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from opslib.localcloud import control

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_start import bare_flask, build, cold_start

ROOT = Path(__file__).resolve().parent.parent
OPSLIB = str(Path(sys.executable).parent / "opslib")
FIVE_EMPTY = """
import sys, papermill
for i in range(5):
    papermill.execute_notebook(
        sys.argv[1], f"{sys.argv[2]}/{i}.ipynb", kernel_name="python3", progress_bar=False
    )
"""


# A stricter floor: the same five notebooks on one kernel (how `opslib run` executes them).
FIVE_EMPTY_ONE_KERNEL = """
import sys
from pathlib import Path
from opslib.notebook import runner
runner._import_papermill()
import papermill
from opslib.notebook.kernel import WarmKernel
with WarmKernel(Path(sys.argv[2])) as kernel:
    for i in range(5):
        kernel.reset()
        papermill.execute_notebook(
            sys.argv[1], f"{sys.argv[2]}/{i}.ipynb", kernel_name="python3", progress_bar=False,
            **kernel.engine_kwargs(),
        )
"""


def empty_notebook(folder: Path) -> Path:
    path = folder / "empty.ipynb"
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": ""}
    book.cells = [nbformat.v4.new_code_cell("pass")]
    nbformat.write(book, path)
    return path


def papermill_floor(notebook: Path, out: Path, script: str = FIVE_EMPTY) -> float:
    """Seconds for one process that runs five empty notebooks through papermill."""
    out.mkdir(exist_ok=True)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", script, str(notebook), str(out)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def opslib_run(state: Path, runs: Path, workspace: Path) -> float:
    """Seconds for `opslib run parameters/example.yaml` with its own state and workspace.

    The workspace keeps steps 1-2 out of the project's own service/ (what the user commits).
    """
    env = {k: v for k, v in os.environ.items() if k != "OPSLIB_LOCALCLOUD_URL"}
    env["OPSLIB_LOCALCLOUD_STATE"] = str(state)
    started = time.perf_counter()
    result = subprocess.run(
        [OPSLIB, "run", "parameters/example.yaml", "--runs", str(runs), "--workspace", workspace],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"opslib run failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    floors, papermills, gunicorns, firsts, seconds, stricts = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="opslib-e2e-") as tmp:
        base = Path(tmp)
        notebook = empty_notebook(base)
        hello = build(bare_flask(base))
        for round_ in range(args.rounds):
            papermill_s = papermill_floor(notebook, base / f"pm-{round_}")
            gunicorn_s = cold_start(hello, "app:app")
            strict_s = papermill_floor(notebook, base / f"pk-{round_}", FIVE_EMPTY_ONE_KERNEL)
            state, runs = base / f"state-{round_}", base / f"runs-{round_}"
            workspace = base / f"workspace-{round_}"
            try:
                first = opslib_run(state, runs, workspace)
                second = opslib_run(state, runs, workspace)
            finally:
                control.stop(state)
                shutil.rmtree(state, ignore_errors=True)
            papermills.append(papermill_s)
            gunicorns.append(gunicorn_s)
            floors.append(papermill_s + gunicorn_s)
            firsts.append(first)
            seconds.append(second)
            stricts.append(strict_s + gunicorn_s)
            print(
                f"round {round_ + 1}: floor {papermill_s:.2f} + {gunicorn_s:.2f} s, "
                f"one-kernel floor {strict_s:.2f} + {gunicorn_s:.2f} s, "
                f"first run {first:.2f} s, second run {second:.2f} s",
                flush=True,
            )
    floor = statistics.median(floors)
    first, second = statistics.median(firsts), statistics.median(seconds)
    pm, gu = statistics.median(papermills), statistics.median(gunicorns)
    strict = statistics.median(stricts)
    rows = [
        ("floor: 5 empty notebooks, papermill, one process", pm, ""),
        ("floor: + one bare gunicorn cold start", gu, ""),
        ("floor", floor, "1.00x"),
        ("opslib run, first (fresh localcloud, build, deploy)", first, f"{first / floor:.2f}x"),
        ("opslib run, second (no-change plans, verify)", second, f"{second / floor:.2f}x"),
        ("stricter floor: the 5 notebooks on one kernel + gunicorn", strict, "1.00x"),
        ("opslib run, first, against it", first, f"{first / strict:.2f}x"),
        ("opslib run, second, against it", second, f"{second / strict:.2f}x"),
    ]
    print(f"\nmedians of {args.rounds} round(s), {os.cpu_count()} CPUs:")
    for name, value, ratio in rows:
        print(f"  {name:<58} {value:6.2f} s  {ratio}")
    print("  target: <= 2.0x and < 15 s")


if __name__ == "__main__":
    main()
