"""The `opslib` command: exit 0 when all is well, 2 for bad input, 1 for a failed step."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

import pandas as pd

# Step modules load in their commands: `opslib run` starts its kernel without waiting for libcst.
from opslib.cli import steps as cli_steps
from opslib.cli.context import add_context, open_from
from opslib.core.errors import OpslibError
from opslib.spec.model import Spec
from opslib.spec.summary import summarize


def _table(frame: pd.DataFrame) -> str:
    """Plain text, words left-aligned as people read them (numbers stay right-aligned)."""
    if not len(frame):
        return "(nothing)"
    # Hand-made because pandas right-aligns every column of to_string's output.
    cells = {c: ["" if pd.isna(v) else str(v) for v in frame[c]] for c in frame.columns}
    left = {c: not pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns}
    width = {c: max(len(str(c)), *map(len, cells[c])) for c in frame.columns}

    def line(values: dict) -> str:
        parts = [values[c].ljust(width[c]) if left[c] else values[c].rjust(width[c]) for c in width]
        return "  ".join(parts).rstrip()

    rows = [line({c: cells[c][i] for c in frame.columns}) for i in range(len(frame))]
    return "\n".join([line({c: str(c) for c in frame.columns}), *rows])


def cmd_check(args: argparse.Namespace) -> int:
    """Every file (and folder) given, then the rules between them: what run and status take."""
    from opslib.cloud.session import open_session
    from opslib.core.errors import BadInput
    from opslib.fleet.load import Fleet
    from opslib.spec.cross_checks import notes
    from opslib.spec.project import params_files

    sessions, broken = [], []
    for path in params_files(args.params):
        try:
            sessions.append(open_session(path, target=args.target))
        except BadInput as exc:  # every file is checked, not only up to the first bad one
            broken.append(exc)
    for exc in broken:
        print(f"error: {exc.render()}", file=sys.stderr)
    if broken:
        return 2
    fleet = Fleet(sessions)  # the rules between the files
    for key in fleet.services:
        fleet.service_members(key)  # and with the other files naming each service
    for session in sessions:
        shown = (
            session.params.relative_to(session.root)
            if session.params.is_relative_to(session.root)
            else session.params
        )
        print(f"{shown}: valid\n{_table(summarize(session.spec))}")
        for note in notes(session.spec):
            print(f"note: {note}")
    return 0


def _folder(args: argparse.Namespace) -> tuple[Spec, Path]:
    """The spec and its service folder: --service-dir as typed, else the spec's service_dir."""
    from opslib.steps.endpoint.folder import ensure_service_dir

    session = open_from(args)
    return session.spec, ensure_service_dir(session)


def cmd_scaffold(args: argparse.Namespace) -> int:
    from opslib.steps import scaffold

    spec, folder = _folder(args)
    plan = scaffold.scaffold(spec, folder, force=args.force, dry_run=args.dry_run)
    print(_table(plan.to_frame()))
    return 0


def cmd_endpoint(args: argparse.Namespace) -> int:
    from opslib.steps.endpoint import lint as endpoint_lint
    from opslib.steps.endpoint import patch as endpoint

    if args.check:
        findings = endpoint_lint.lint(Path(args.path))
        print(_table(findings) if len(findings) else "endpoint checklist: no findings")
        return 1 if len(findings) else 0
    args.params = args.path
    spec, folder = _folder(args)
    plan = endpoint.patch_endpoint(spec, folder, dry_run=args.dry_run)
    print(_table(plan.to_frame()))
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    from opslib.cli.steps import _plan_table
    from opslib.fleet import destroy

    session = open_from(args)
    spec = session.spec
    plan = destroy.destroy(
        session, service=args.service, secrets=args.secrets, dry_run=args.dry_run
    )
    if not plan.pending:
        print(f"nothing to destroy for {spec.job.name}")
        return 0
    print(_plan_table(plan.to_frame()))
    if not args.dry_run:
        from opslib.spec.project import typed

        file, folder = (typed(p, session.root) for p in (session.params, session.params.parent))
        print(
            f"\n{spec.job.name} destroyed; {file} stays: delete it (rm {shlex.quote(file)}), "
            f"or `opslib run {shlex.quote(folder)}` brings the job back"
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from opslib.notebook import runner

    results: list[runner.StepResult] = []
    chosen = runner.parse_steps(args.steps)
    try:
        runner.run(
            args.params,
            steps=args.steps,
            target=args.target,
            workspace=args.workspace,
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
        jobs = runner.jobs_frame(results)
        if jobs is not None:
            print(f"\nautomations:\n{_table(jobs)}")
    if verdict is not None:
        from opslib.core.display import banner

        jobs = ", ".join(dict.fromkeys(verdict["job"]))
        zone = runner.time_zone(results)
        print(f"\n{banner('passed', f'verify {jobs}', time_zone=zone)!r}")
    return 0


def cmd_localcloud(args: argparse.Namespace) -> int:
    from opslib.cloud.session import state_dir
    from opslib.core.errors import BadInput
    from opslib.localcloud import control
    from opslib.spec.project import project_root

    state = args.state.resolve() if args.state else state_dir(project_root(Path.cwd()))
    if args.all and args.action != "stop":
        raise BadInput("localcloud", f"--all goes with stop, not {args.action}", "use stop --all")
    if args.action == "start":
        try:
            if not args.detach and control.read(state) is None:
                control.check_port(args.port)  # before the banner: the exec never returns
                where = f"http://127.0.0.1:{args.port}" if args.port else "a free port"
                print(f"localcloud on {where} (state {state}); Ctrl-C stops it")
            running = control.start(state, args.port, detach=args.detach)
        except control.PortBusy as exc:  # one line: who holds the port and how to free it
            raise OpslibError("localcloud", str(exc)) from None
        except RuntimeError as exc:
            raise OpslibError("localcloud", str(exc), f"see {state}/server.log") from None
        print(f"localcloud running at {running.url} (pid {running.pid}, state {state})")
        return 0
    if args.action == "stop":
        if args.all:
            stopped = control.stop_all()
            for running in stopped:
                print(f"localcloud stopped (pid {running.pid}, state {running.state})")
            if not stopped:
                print("no localcloud was running")
            return 0
        stopped, leftovers = control.stop_with_leftovers(state)
        print("localcloud stopped" if stopped else "localcloud was not running")
        for what in leftovers:
            print(f"stopped {what}, left running by a localcloud that was killed")
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
    from opslib.localcloud.control import DEFAULT_PORT

    lc = sub.add_parser("localcloud", help="the local Google Cloud: start, stop, status, env")
    lc.add_argument("action", choices=["start", "stop", "status", "env"])
    lc.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"default {DEFAULT_PORT}; 0 picks a free port (when another localcloud holds it)",
    )
    lc.add_argument(
        "--state",
        type=Path,
        help="where its state lives (default: .localcloud in the project root, or "
        "$OPSLIB_LOCALCLOUD_STATE)",
    )
    lc.add_argument("--detach", action="store_true", help="start in the background")
    lc.add_argument(
        "--all",
        action="store_true",
        help="with stop: every localcloud this user started (any state directory)",
    )
    lc.set_defaults(func=cmd_localcloud)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opslib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "check", help="validate parameters files and the rules between them; print what they do"
    )
    check.add_argument("params", type=Path, nargs="+", help="PARAMS.yaml files and/or folders")
    check.add_argument("--target", choices=["local", "gcp"], help="override the file's target")
    check.set_defaults(func=cmd_check)

    scaf = sub.add_parser("scaffold", help="step 1: write the job module and its test")
    scaf.add_argument("params", type=Path)
    add_context(scaf, service_dir="default: the spec's service_dir")
    scaf.add_argument("--force", action="store_true", help="replace a job module that differs")
    scaf.add_argument("--dry-run", action="store_true", help="show the plan only")
    scaf.set_defaults(func=cmd_scaffold)

    endp = sub.add_parser("endpoint", help="step 2: add the route; --check lints every route")
    endp.add_argument(
        "path", metavar="PARAMS|SERVICE_DIR", help="PARAMS.yaml, or SERVICE_DIR with --check"
    )
    add_context(endp, service_dir="default: the spec's service_dir")
    endp.add_argument("--check", action="store_true", help="lint routes against the checklist")
    endp.add_argument("--dry-run", action="store_true", help="show the plan only")
    endp.set_defaults(func=cmd_endpoint)

    run = sub.add_parser("run", help="run the step notebooks (papermill) for automations")
    run.add_argument("params", type=Path, nargs="+", help="PARAMS.yaml files and/or folders")
    run.add_argument("--steps", default="1-5", help="which steps, e.g. 1-5 (default), 3, 1-2,4")
    run.add_argument("--target", choices=["local", "gcp"], help="override the file's target")
    run.add_argument(
        "--workspace",
        type=Path,
        help="work on copies of the service folders under this folder (made once; it may be "
        "outside the project; default: the project's own service folders)",
    )
    run.add_argument(
        "--runs",
        type=Path,
        help="where the executed notebooks go (default: runs/ in the project; may be outside it)",
    )
    run.add_argument("--fresh", action="store_true", help="copy the workspace folders again")
    run.set_defaults(func=cmd_run)
    des = sub.add_parser("destroy", help="remove one automation; the others on its service stay")
    des.add_argument("params", type=Path)
    add_context(des, service_dir="default: the spec's service_dir")
    des.add_argument("--dry-run", action="store_true", help="show the plan only")
    des.add_argument(
        "--service", action="store_true", help="delete the service when no job remains on it"
    )
    des.add_argument(
        "--secrets", action="store_true", help="delete its secrets no other automation mounts"
    )
    des.set_defaults(func=cmd_destroy)
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
    except KeyboardInterrupt:
        # Every file is written whole (atomic writes) and every step is idempotent, so the
        # same command finishes the work; a traceback would only hide that. The cell that was
        # running ends with its kernel: asyncio would log that at exit, so quiet it.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        print(
            "\ninterrupted: what was done is kept, no file is half-written\n"
            "  fix: run the same command again to finish",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
