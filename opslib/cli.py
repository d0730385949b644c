"""The `opslib` command: exit 0 when all is well, 2 for bad input, 1 for a failed step."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pandas as pd

# Step modules load in their commands: `opslib run` starts its kernel without waiting for libcst.
from opslib import cli_steps
from opslib.errors import OpslibError
from opslib.spec_loader import load_spec
from opslib.summary import summarize


def _table(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False) if len(frame) else "(nothing)"


def cmd_check(args: argparse.Namespace) -> int:
    spec = load_spec(args.params)
    print(f"{args.params}: valid\n{_table(summarize(spec))}")
    return 0


def cmd_scaffold(args: argparse.Namespace) -> int:
    from opslib import scaffold

    spec = load_spec(args.params)
    plan = scaffold.scaffold(spec, args.service_dir, force=args.force, dry_run=args.dry_run)
    print(_table(plan.to_frame()))
    return 0


def cmd_endpoint(args: argparse.Namespace) -> int:
    from opslib import endpoint, endpoint_lint

    if args.check:
        findings = endpoint_lint.lint(Path(args.target))
        print(_table(findings) if len(findings) else "endpoint checklist: no findings")
        return 1 if len(findings) else 0
    spec = load_spec(args.target)
    plan = endpoint.patch_endpoint(spec, args.service_dir, dry_run=args.dry_run)
    print(_table(plan.to_frame()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from opslib import runner

    results: list[runner.StepResult] = []
    chosen = runner.parse_steps(args.steps)
    try:
        runner.run(
            args.params,
            steps=args.steps,
            target=args.target,
            source=args.source,
            runs=args.runs,
            fresh=args.fresh,
            results=results,
        )
    finally:  # the table shows every chosen step: the failed one and those not run
        if results:
            print(f"\n{_table(runner.summary_frame(results, chosen))}")
        verdict = runner.verify_checks(results)
        if verdict is not None:
            print(f"\nverify:\n{_table(verdict)}")
    if verdict is not None:
        print("verify PASSED")
    return 0


def cmd_localcloud(args: argparse.Namespace) -> int:
    from opslib.localcloud import control

    state = Path(args.state)
    if args.action == "start":
        if not args.detach:
            print(f"localcloud on http://127.0.0.1:{args.port} (state {state}); Ctrl-C stops it")
        try:
            running = control.start(state, args.port, detach=args.detach)
        except RuntimeError as exc:
            raise OpslibError("localcloud", str(exc), f"see {state}/server.log") from None
        print(f"localcloud running at {running.url} (pid {running.pid}, state {state})")
        return 0
    if args.action == "stop":
        print("localcloud stopped" if control.stop(state) else "localcloud was not running")
        return 0
    running = control.read(state)
    if running is None:
        print(f"localcloud is not running (state {state})", file=sys.stderr)
        return 1
    if args.action == "status":
        print(f"localcloud running at {running.url} (pid {running.pid}, state {state})")
    else:
        for name, value in control.environment(running.url).items():
            print(f"export {name}={shlex.quote(value)}")
    return 0


def _localcloud_parser(sub: argparse._SubParsersAction) -> None:
    from opslib.localcloud.control import DEFAULT_PORT, DEFAULT_STATE

    lc = sub.add_parser("localcloud", help="the local Google Cloud: start, stop, status, env")
    lc.add_argument("action", choices=["start", "stop", "status", "env"])
    lc.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    lc.add_argument("--state", type=Path, default=DEFAULT_STATE, help="where its state lives")
    lc.add_argument("--detach", action="store_true", help="start in the background")
    lc.set_defaults(func=cmd_localcloud)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opslib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate a parameters file; print what it will do")
    check.add_argument("params", type=Path)
    check.set_defaults(func=cmd_check)

    scaf = sub.add_parser("scaffold", help="step 1: write the job module and its test")
    scaf.add_argument("params", type=Path)
    scaf.add_argument("--service-dir", type=Path, default=Path("service"))
    scaf.add_argument("--force", action="store_true", help="replace a job module that differs")
    scaf.add_argument("--dry-run", action="store_true", help="show the plan only")
    scaf.set_defaults(func=cmd_scaffold)

    endp = sub.add_parser("endpoint", help="step 2: add the route; --check lints every route")
    endp.add_argument("target", help="PARAMS.yaml, or SERVICE_DIR with --check")
    endp.add_argument("--service-dir", type=Path, default=Path("service"))
    endp.add_argument("--check", action="store_true", help="lint routes against the checklist")
    endp.add_argument("--dry-run", action="store_true", help="show the plan only")
    endp.set_defaults(func=cmd_endpoint)

    run = sub.add_parser("run", help="run the step notebooks (papermill) for one automation")
    run.add_argument("params", type=Path)
    run.add_argument("--steps", default="1-5", help="which steps, e.g. 1-5 (default), 3, 1-2,4")
    run.add_argument("--target", choices=["local", "gcp"], help="override the file's target")
    run.add_argument("--source", type=Path, help="the service to copy (default: service/)")
    run.add_argument("--runs", type=Path, help="where copies and notebooks go (default: runs/)")
    run.add_argument("--fresh", action="store_true", help="copy service/ again")
    run.set_defaults(func=cmd_run)
    _localcloud_parser(sub)
    cli_steps.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OpslibError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
