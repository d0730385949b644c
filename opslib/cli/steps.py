"""`opslib deploy | schedule | verify | logs | secrets | doctor | alerts | status`: the steps
after 1-2 from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from opslib.cli.context import add_context, fleet_from, open_from


def _table(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False) if len(frame) else "(nothing)"


def _plan_table(frame: pd.DataFrame) -> str:
    """The plan without the long gcloud column, then each gcloud equivalent on its own line."""
    shown = frame.drop(columns=["gcloud"])
    commands = [f"  $ {c}" for c in frame["gcloud"] if c]
    return _table(shown) + (
        "\nequivalent gcloud commands:\n" + "\n".join(commands) if commands else ""
    )


def cmd_deploy(args: argparse.Namespace) -> int:
    """Ships the spec's service folder with what every automation of that service needs."""
    from opslib.core.errors import BadInput
    from opslib.fleet import steps as fleet_steps

    fleet = fleet_from(args, [args.params])
    session = fleet.sessions[0]
    if session.spec.job.effective_runtime == "service":
        members = fleet.service_members(session.spec.service_key)
        if len(members) > 1:
            print(
                f"service {session.spec.service}: {len(members)} automations share it; "
                "their env, secrets and invokers are deployed together"
            )
    try:
        deployed = fleet_steps.deploy(fleet, progress=True, prune=args.prune, dry_run=args.dry_run)
    except BadInput as exc:
        if getattr(exc, "plan", None) is not None:
            print(_plan_table(exc.plan.to_frame()))
        raise
    print(_plan_table(deployed.plan.drop(columns=["service"])))
    if not args.dry_run and len(deployed.status):
        print(f"\n{_table(deployed.status.drop(columns=['service']))}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from opslib.steps import schedule

    session = open_from(args)
    spec, clients = session.spec, session.clients
    action = args.action or "apply"
    if action == "apply":
        plan = schedule.schedule(spec, clients, dry_run=args.dry_run)
    else:
        plan = getattr(schedule, action)(spec, clients, dry_run=args.dry_run)
    print(_plan_table(plan.to_frame()))
    if action != "delete" and not args.dry_run:
        print(f"\n{_table(schedule.job_frame(spec, clients))}")
        print(f"\nnext runs:\n{_table(schedule.next_runs_frame(spec))}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from opslib.core.display import banner
    from opslib.doctor import explain
    from opslib.steps import verify

    session = open_from(args)
    spec = session.spec
    verdict = explain.verify(session, progress=not args.quiet)
    print(_table(verdict.checks))
    if len(verdict.tasks):
        print(f"\ntasks:\n{_table(verdict.tasks)}")
    print(f"\nlogs of the run:\n{_table(verdict.logs)}")
    line = banner(
        "passed" if verdict.passed else "failed",
        f"verify {spec.job.name}",
        ", ".join(verdict.run_ids[:1]),
        detail="" if verdict.passed else f"attempt {verdict.attempt}",
        time_zone=spec.schedule.time_zone,
    )
    if not verdict.passed:
        from opslib.doctor import diagnose as doctor

        print(f"\nerror lines:\n{_table(verify.error_lines(verdict))}")
        print(f"\ndoctor:\n{doctor.render(verdict.findings)}")
        print(f"\n{line!r}")
        return 1
    print(f"\n{line!r}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from opslib.steps import logs

    session = open_from(args)
    frame = logs.recent(
        session.clients, session.spec, freshness=args.since, errors_only=args.errors
    )
    print(_table(frame))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Exit 1 when a finding of severity error exists, 0 otherwise (2 for bad input)."""
    from opslib.doctor import diagnose as doctor
    from opslib.steps.logs import parse_freshness

    session = open_from(args)
    spec = session.spec
    findings = doctor.diagnose(session, since=parse_freshness(args.since))
    print(doctor.render(findings))
    print(f"\n{doctor.verdict(findings, spec.job.name, spec.schedule.time_zone)!r}")
    if args.queries:
        print(f"\nlog queries:\n{_table(doctor.queries(spec, args.since)[['purpose', 'gcloud']])}")
    return 1 if doctor.has_errors(findings) else 0


def cmd_secrets(args: argparse.Namespace) -> int:
    import sys

    from opslib.core.plan import Plan
    from opslib.steps import secrets

    session = open_from(args)
    spec, clients = session.spec, session.clients
    if args.action == "check":
        frame = secrets.check_refs(clients, spec)
        print(_table(frame))
        return 0 if frame.empty or bool(frame["ok"].all()) else 1
    if args.action == "import":
        print(
            _plan_table(
                secrets.import_env(
                    clients, spec.project, Path(args.env).resolve(), dry_run=args.dry_run
                ).to_frame()
            )
        )
        return 0
    if not args.name:
        raise SystemExit("opslib secrets add|list needs a secret NAME")
    if args.action == "list":
        print(_table(secrets.list_versions(clients, spec.project, args.name)))
        return 0
    value = sys.stdin.buffer.read()  # never from the command line, where it would be seen
    plan = Plan(
        [
            secrets.ensure_secret(clients, spec.project, args.name, dry_run=args.dry_run),
            secrets.add_version(clients, spec.project, args.name, value, dry_run=args.dry_run),
        ]
    )
    print(_plan_table(plan.to_frame()))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 when every automation is healthy (ok or paused), 1 otherwise, 2 for bad input."""
    from opslib.fleet import status
    from opslib.spec.project import default_params, project_root

    params = list(args.params) or [default_params(project_root(Path.cwd()))]
    frame = status.status(fleet_from(args, params), since=args.since)
    print(status.to_text(frame))
    print(f"\n{status.verdict(frame)!r}")
    return 0 if status.healthy(frame) else 1


def cmd_alerts(args: argparse.Namespace) -> int:
    """Each automation's channels and alert policies made to match its `alerts:` block."""
    from opslib.steps import alerts
    from opslib.steps.alerts import probe

    failed = False
    for session in fleet_from(args, list(args.params)).sessions:
        if args.test:  # a test notification through every channel, by the real path
            sent = probe.send_test(session)
            failed |= bool((sent["result"] != "notified").any())
            print(f"{session.spec.job.name}:\n{_table(sent)}")
            continue
        plan = alerts.alerts(session, dry_run=args.dry_run)
        print(f"{session.spec.job.name}:\n{_plan_table(plan.to_frame())}")
    return 1 if failed else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the step 3-5 commands on the main parser."""
    dep = sub.add_parser("deploy", help="step 3: build with Cloud Build, deploy to Cloud Run")
    dep.add_argument("params", type=Path)
    add_context(dep, service_dir="the folder to ship (default: the spec's service_dir)")
    dep.add_argument("--dry-run", action="store_true", help="show the plan only")
    dep.add_argument(
        "--prune",
        nargs="?",
        const="pause",
        default="",
        choices=["pause", "delete"],
        help="deploy even when live Scheduler jobs call routes the source lacks: pause those "
        "jobs (or --prune=delete them)",
    )
    dep.set_defaults(func=cmd_deploy)

    sch = sub.add_parser("schedule", help="step 4: create or update the Cloud Scheduler job")
    sch.add_argument("params", type=Path)
    sch.add_argument("action", nargs="?", choices=["apply", "pause", "resume", "delete"])
    add_context(sch)
    sch.add_argument("--dry-run", action="store_true", help="show the plan only")
    sch.set_defaults(func=cmd_schedule)

    ver = sub.add_parser("verify", help="step 5: run the job now and judge it from its logs")
    ver.add_argument("params", type=Path)
    ver.add_argument("--quiet", action="store_true", help="no progress display")
    add_context(ver, service_dir="the service folder (for the doctor's code checks)")
    ver.set_defaults(func=cmd_verify)

    lgs = sub.add_parser("logs", help="the service's recent logs as a table")
    lgs.add_argument("params", type=Path)
    lgs.add_argument("--errors", action="store_true", help="severity>=ERROR only")
    lgs.add_argument("--since", default="1h", help="how far back: 10m, 1h, 1d")
    add_context(lgs)
    lgs.set_defaults(func=cmd_logs)

    doc = sub.add_parser("doctor", help="troubleshoot: what is wrong, the evidence, the fix")
    doc.add_argument("params", type=Path)
    doc.add_argument("--since", default="24h", help="how far back to read logs: 1h, 24h, 7d")
    add_context(doc, service_dir="the service folder whose job code it reads (retry policy)")
    doc.add_argument("--queries", action="store_true", help="print the gcloud log queries too")
    doc.set_defaults(func=cmd_doctor)

    sec = sub.add_parser("secrets", help="Secret Manager: check, import a .env, add, list")
    sec.add_argument("action", choices=["check", "import", "add", "list"])
    sec.add_argument("params", type=Path)
    sec.add_argument("name", nargs="?", help="secret id (add reads the value from stdin)")
    sec.add_argument("--env", default=".env", help="the .env file for import")
    sec.add_argument("--dry-run", action="store_true", help="show the plan only")
    add_context(sec)
    sec.set_defaults(func=cmd_secrets)

    al = sub.add_parser("alerts", help="Cloud Monitoring: who hears about failed or overrun runs")
    al.add_argument("params", type=Path, nargs="+", help="PARAMS.yaml files and/or folders")
    al.add_argument("--dry-run", action="store_true", help="show the plan only")
    al.add_argument(
        "--test", action="store_true", help="send a test notification through every channel"
    )
    add_context(al)
    al.set_defaults(func=cmd_alerts)

    st = sub.add_parser("status", help="every automation: schedule, last run, drift, health")
    st.add_argument(
        "params",
        type=Path,
        nargs="*",
        help="PARAMS.yaml files and/or folders (default: parameters/)",
    )
    st.add_argument("--since", default="24h", help="how far back to read runs: 1h, 24h, 7d")
    add_context(st)
    st.set_defaults(func=cmd_status)
