"""`farm run`, `farm nightly` and `farm probe`: the checklist on the boards, and who is there."""

from __future__ import annotations

import argparse
import logging

from farm import resources
from farm.config import options
from farm.config.project import find_project_config
from farm.statuses import BoardStatus
from farm.util import new_run_id, printable

log = logging.getLogger(__name__)


def print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from farm.ui.progress import cell

    table = Table(title=f"farm run {result.run_id}: {cell(result.model.name)} on {len(result.boards)} board(s)")
    for column in ("board", "status", "variant", "p50 ms", "p95 ms", "peak MB", "checks"):
        table.add_column(column)
    fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
    for board in result.boards:
        if not board.variants:
            table.add_row(cell(board.name), f"[red]{board.status}[/]", "-", "-", "-", "-", cell(board.error or ""))
            continue
        for name, variant in board.variants.items():
            if variant.status != BoardStatus.OK:
                table.add_row(cell(board.name), f"[red]{variant.status}[/]", cell(name), "-", "-", "-",
                              cell(variant.error or ""))
                continue
            stats = variant.latency_ms or {}
            counts: dict[str, int] = {}
            for check in variant.checks:
                counts[check.status.value] = counts.get(check.status.value, 0) + 1
            text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            failed = [c.item for c in variant.checks if not c.passed]
            if failed:
                text += f" [red]({cell(', '.join(failed))})[/]"
            table.add_row(cell(board.name), BoardStatus.OK if board.ok else f"[red]{board.status}[/]", cell(name),
                          fmt(stats.get("p50")),
                          fmt(stats.get("p95")), fmt(variant.peak_rss_mb), text)
    Console().print(table)
    for board in result.boards:
        if board.recovery:
            print(f"{board.name}: {board.recovery.cause}; {board.recovery.note}")


def resolved(args: argparse.Namespace) -> dict[str, options.Setting]:
    """The run options of a command: its arguments, then FARM_*, then [tool.farm], then defaults."""
    return options.resolve(lambda name: getattr(args, name, None), project=find_project_config(),
                           defaults=getattr(args, "command_defaults", None))


def run_job(args: argparse.Namespace):
    """Validate everything, then run the suites as one pytest session; (exit code, job)."""
    import pytest

    from farm.deploy import health, interrupts
    from farm.deploy.job import Job
    from farm.deploy.selection import Selection
    from farm.pytestplugin.hooks import PreparedJob

    settings = options.run_settings(resolved(args))
    if args.command == "nightly":  # boards not checked recently are checked first: a bad one is left out
        _health_check(settings, health.due(settings, Selection(settings.inventory, *settings.selection).names),
                      "not checked in the last 24 h")
    job = Job(settings)
    run_dir = job.run_dir
    code = pytest.main([*(args.suites or [str(resources.default_suite())]), f"--html={run_dir.report}",
                        "--self-contained-html", f"--junitxml={run_dir.junit}", "-p", "no:cacheprovider", "-q", "-rfE",
                        *args.pytest_args], plugins=[PreparedJob(job)])
    if run_dir.results.exists():
        print_summary(job.result)
        print(f"report: {run_dir.report}")
        _health_check(settings, [b.name for b in job.result.boards if b.recovery and b.recovery.recovered],
                      "power-cycled during the run")
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED):
        return 2, job
    if code == pytest.ExitCode.INTERRUPTED:
        return interrupts.exit_code(), job
    return (0 if code == pytest.ExitCode.OK else 1), job


def _health_check(settings, names: list[str], why: str) -> None:
    """A health check of these boards (LAVA's: before a nightly, after a recovery); their verdicts printed."""
    from dataclasses import replace

    from farm.deploy import health

    if not names or settings.history_url is None:
        return
    log.info(f"health check of {', '.join(names)}: {why}")
    for verdict in health.check(replace(settings, boards=names, pools=[], tags=[])):
        log.info(f"{verdict.board}: {verdict.state}: {verdict.reason}")


def cmd_run(args: argparse.Namespace) -> int:
    return run_job(args)[0]


def cmd_nightly(args: argparse.Namespace) -> int:
    code, job = run_job(args)
    if code in (0, 1) and job.run_dir.results.exists():
        print("regression against each board's baseline:")
        for board in job.result.boards:
            for name, variant in board.variants.items():
                check = variant.check("regression")
                if check:
                    print(f"  {board.name:<12}{name:<14}{check.status.value:<6}{printable(check.why)}")
    return code


def cmd_config(args: argparse.Namespace) -> int:
    from farm.record.storeurl import redact_url

    project = find_project_config()
    print(f"project configuration: {project.path if project else 'none (no farm.toml or [tool.farm] found)'}")
    for name, setting in resolved(args).items():
        shown = ",".join(setting.value) if isinstance(setting.value, list) else setting.value
        if shown in (None, "") and name in DEFAULT_FILES:
            shown = DEFAULT_FILES[name]()
        shown = redact_url(str(shown)) if shown not in (None, "") else "-"  # a history URL's password: never
        print(f"{name:<10} {shown:<60} {setting.source}")
    return 0


DEFAULT_FILES = {"inventory": resources.standin_inventory, "model": resources.demo_model, "data": resources.demo_data,
                 "checklist": lambda: resources.checklist("dms")}


def cmd_probe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from farm.deploy.fanout import Fanout
    from farm.deploy.selection import Selection
    from farm.deploy.session import DeployPlan
    from farm.record.rundir import RunDir
    from farm.ui.progress import BoardProgress

    value = {name: setting.value for name, setting in resolved(args).items()}
    selection = Selection(Path(value["inventory"] or resources.standin_inventory()), value["pool"], value["tag"],
                          value["board"])
    run_id = new_run_id()
    plan = DeployPlan.probe(run_id)
    with selection.standins_up() as boards, BoardProgress(selection.names) as progress:
        group = Fanout(plan, RunDir(Path(value["out"]) / ".probe", run_id), progress.update).run(boards)
    from farm.board.lease import read_holder

    for result in group:
        facts = result.facts
        detail = (f"python {facts.get('python')}, onnxruntime {facts.get('onnxruntime', '-')}, "
                  f"{facts.get('machine', '-')}" if result.ok else result.error)
        holder = read_holder(facts.get("lock", ""), facts.get("now", 0))
        print(printable(f"{result.name:<14}{result.status.value:<18}{detail}"
                        + (f"; locked by {holder}" if holder else "")))
    return 0 if not group.failed else 1


def register(sub) -> None:
    run = sub.add_parser("run", help="run the checklist suite (or your suites) on the boards; report under results/")
    run.add_argument("suites", nargs="*", help="pytest files or folders (default: the deployment checklist)")
    options.add_to_argparse(run)
    run.add_argument("--pytest-args", dest="pytest_args", nargs=argparse.REMAINDER, default=[],
                     help="everything after this goes to pytest")
    run.set_defaults(func=cmd_run)

    nightly = sub.add_parser("nightly", help="run on a pool, compare with each board's baseline; exit 1 on failure "
                                             "or regression")
    options.add_to_argparse(nightly)
    nightly.set_defaults(func=cmd_nightly, suites=[], pytest_args=[],
                         command_defaults={"checklist": str(resources.checklist("dms-nightly")), "rounds": 3})

    config = sub.add_parser("config", help="the effective run settings and where each comes from")
    options.add_to_argparse(config)
    config.set_defaults(func=cmd_config)

    probe = sub.add_parser("probe", help="connect to the boards and report what they have")
    options.add_to_argparse(probe, options.SELECTION + (options.OUT,))
    probe.set_defaults(func=cmd_probe)
