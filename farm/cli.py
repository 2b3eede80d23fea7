"""The `farm` command line: one subcommand per everyday job.

Exit codes: 0 success; 1 a check failed or errored (or a refused sign-off);
2 bad usage or configuration, with a one-line message naming file, line, field.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from farm.errors import ConfigError, FarmError


def say(message: str) -> None:
    """Progress and diagnostics go to stderr; stdout carries results."""
    print(message, file=sys.stderr, flush=True)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def cmd_quantize(args: argparse.Namespace) -> int:
    from farm import models

    recipe = models.Recipe(per_channel=args.per_channel, calibration_method=args.calibration_method,
                           calibration_samples=args.calibration_samples,
                           exclude_op_types=tuple(args.exclude_op_types))
    manifest = models.build(args.model, args.data, args.out, variants=args.variants, recipe=recipe,
                            task=args.task, allow_calibration_count=args.allow_calibration_count,
                            target_loss=args.target_loss, progress=lambda m: say(f"quantize: {m}"))
    print(f"{'variant':<14}{'status':<8}{'size MB':>9}{'host p50 ms':>13}{'loss %':>8}")
    for name, entry in manifest["variants"].items():
        host = entry.get("host", {})
        size = f"{entry['size_bytes'] / 1e6:.2f}" if entry.get("size_bytes") else "-"
        p50 = f"{host['p50_ms']:.3f}" if host.get("p50_ms") is not None else "-"
        loss = f"{host['loss_pct']:.2f}" if host.get("loss_pct") is not None else "-"
        print(f"{name:<14}{entry['status']:<8}{size:>9}{p50:>13}{loss:>8}")
        if entry["reason"]:
            print(f"  {entry['reason']}")
    print(f"manifest: {Path(args.out) / 'manifest.json'}")
    return 0 if all(e["status"] == "ok" for e in manifest["variants"].values()) else 1


def add_quantize(sub) -> None:
    from farm.models import CALIBRATION_METHODS, VARIANTS

    p = sub.add_parser("quantize", help="build fp32 / int8_dynamic / int8_static variants and a manifest")
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("--data", required=True, help=".npz with calibration / evaluation arrays (see README)")
    p.add_argument("--out", required=True, help="folder for the variants and manifest.json")
    p.add_argument("--variants", type=_csv, default=list(VARIANTS))
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="minmax")
    p.add_argument("--calibration-samples", type=int, help="use the first N calibration samples")
    p.add_argument("--allow-calibration-count", action="store_true",
                   help="build even when calibration uses fewer than 100 or more than 1000 samples")
    p.add_argument("--exclude-op-types", type=_csv, default=[],
                   help="op types kept in float in static INT8 (DepthwiseConv: Conv with group > 1)")
    p.add_argument("--target-loss", type=float, help="search static recipes for the fastest within this loss %%")
    p.add_argument("--task", choices=("classification", "regression"))
    p.set_defaults(func=cmd_quantize)


def _job_settings(args: argparse.Namespace):
    from farm.options import job_settings

    return job_settings(lambda name: getattr(args, name, None))


def _check_configuration(settings) -> None:
    """Everything that can be wrong before a board is touched: exit 2 with one line."""
    from farm.datafile import load_data
    from farm.job import Job
    from farm.models import VARIANTS, inspect_model

    unknown = [v for v in settings.variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    job = Job(settings)
    load_data(settings.data, inspect_model(settings.model).inputs)
    if not job.board_names:
        raise ConfigError(f"{settings.inventory}: no board matches the selection "
                          f"(pools {settings.pools or 'any'}, tags {settings.tags or 'any'}, boards {settings.boards or 'any'})")


def print_summary(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"farm run {results['run_id']}: {results['model']['name']} on {len(results['boards'])} board(s)")
    for column in ("board", "status", "variant", "p50 ms", "p95 ms", "peak MB", "checks"):
        table.add_column(column)
    for board in results["boards"]:
        if board["status"] != "ok":
            table.add_row(board["name"], f"[red]{board['status']}[/]", "-", "-", "-", "-", board["error"] or "")
            continue
        for variant, entry in board["variants"].items():
            stats = entry.get("latency_ms") or {}
            counts: dict[str, int] = {}
            for check in entry["checks"]:
                counts[check["status"]] = counts.get(check["status"], 0) + 1
            failed = [c["item"] for c in entry["checks"] if c["status"] in ("fail", "error")]
            text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            if failed:
                text += f" [red]({', '.join(failed)})[/]"
            fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
            table.add_row(board["name"], "ok", variant, fmt(stats.get("p50")), fmt(stats.get("p95")),
                          fmt(entry.get("peak_rss_mb")), text)
    Console().print(table)


def cmd_run(args: argparse.Namespace) -> int:
    import json

    import pytest

    from farm import options
    from farm.job import DEFAULT_SUITE, new_run_id

    settings = _job_settings(args)
    _check_configuration(settings)
    run_id = new_run_id()
    run_dir = Path(args.out) / run_id
    pytest_args = [*(args.suites or [str(DEFAULT_SUITE)]), *options.pytest_args(lambda name: getattr(args, name)),
                   f"--farm-run-id={run_id}", f"--html={run_dir / 'report.html'}", "--self-contained-html",
                   f"--junitxml={run_dir / 'junit.xml'}", "-p", "no:cacheprovider", "-q", "-rfE",
                   *args.pytest_args]
    code = pytest.main(pytest_args)
    results_path = run_dir / "results.json"
    if results_path.exists():
        print_summary(json.loads(results_path.read_text()))
        print(f"report: {run_dir / 'report.html'}")
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED):
        return 2
    if code == pytest.ExitCode.INTERRUPTED:
        return 130
    return 0 if code == pytest.ExitCode.OK else 1


def _lab():
    from farm.standins import Lab

    return Lab(progress=lambda m: say(f"lab: {m}"))


def cmd_lab_up(args: argparse.Namespace) -> int:
    from farm.inventory import load_inventory
    from farm.standins import StandinSpec

    if args.boards or args.arm:
        specs = [StandinSpec(f"sim-{i:02d}", cores=args.cores) for i in range(1, (args.boards or 0) + 1)]
        specs += [StandinSpec(f"{cpu.replace('cortex-', '')}-{'vm' if args.full_system else 'qemu'}", cores=args.cores,
                              extra={"arch": "arm64", "class": cpu, "full_system": args.full_system})
                  for cpu in args.arm]
    else:
        specs = [StandinSpec.from_inventory(s) for s in load_inventory(args.inventory).standins]
    lab = _lab()
    boards, started = lab.up(specs)
    for board in boards:
        print(f"{board.name:<12} {board.address}{'  (started)' if board.name in started else '  (already up)'}")
    print(f"inventory: {lab.dir / 'inventory.yaml'}")
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    stopped = _lab().down(args.names or None)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def cmd_lab_status(args: argparse.Namespace) -> int:
    lab = _lab()
    running = lab.running()
    for name, entry in running.items():
        print(f"{name:<12} 127.0.0.1:{entry['port']}  pid {entry['pid']}  cores {entry.get('cores') or '-'}  "
              f"memory {entry.get('memory_mb') or '-'} MB")
    print(f"{len(running)} stand-in(s) up; inventory: {lab.dir / 'inventory.yaml'}")
    return 0


def cmd_inventory_check(args: argparse.Namespace) -> int:
    from farm.inventory import load_inventory

    inventory = load_inventory(args.file)
    print(f"{args.file}: ok, {len(inventory.boards)} board(s), {len(inventory.standins)} stand-in(s)")
    return 0


def cmd_inventory_list(args: argparse.Namespace) -> int:
    from farm.inventory import load_inventory

    inventory = load_inventory(args.file)
    print(f"{'name':<14}{'address':<34}{'class':<13}{'pools':<20}{'providers'}")
    for board in inventory.select(args.pool, args.tag, args.board):
        print(f"{board.name:<14}{board.address:<34}{board.board_class or '-':<13}{','.join(board.pools) or '-':<20}"
              f"{','.join(board.providers)}")
    for standin in inventory.standins:
        print(f"{standin['name']:<14}{'(stand-in, started by farm)':<34}{standin.get('class', '-'):<13}"
              f"{','.join(standin.get('pools', [])) or '-':<20}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from farm.agent import AGENT_PATH, Measurement
    from farm.artifacts import Artifact
    from farm.job import Job, new_run_id
    from farm.progress import BoardProgress
    from farm.runner import Deployment, DeployPlan

    settings = _job_settings(args)
    job = Job(settings, say=lambda m: say(f"farm: {m}"))
    plan = DeployPlan(new_run_id(), Artifact.of(AGENT_PATH), {}, None, None, Measurement(), probe_only=True)
    try:
        job.start_standins()
        with BoardProgress(job.board_names) as progress:
            outcomes = Deployment(plan, Path(args.out) / ".probe", progress.update).run(
                [job.boards[n] for n in job.board_names])
    finally:
        job.stop_standins()
    for outcome in outcomes:
        facts = outcome.facts
        detail = (f"python {facts.get('python')}, onnxruntime {facts.get('onnxruntime', '-')}, "
                  f"{facts.get('machine', '-')}" if outcome.status == "ok" else outcome.error)
        print(f"{outcome.board.name:<14}{outcome.status:<18}{detail}")
    return 0 if all(o.status == "ok" for o in outcomes) else 1


def _history(args: argparse.Namespace):
    from farm.history import History
    from farm.job import history_url

    return History(history_url(args.out, args.history))


def cmd_history(args: argparse.Namespace) -> int:
    runs = _history(args).runs(board=args.board, model=args.model, limit=args.limit)
    print(f"{'run':<24}{'started (UTC)':<27}{'model':<12}{'passed':<8}boards")
    for run in runs:
        print(f"{run['run_id']:<24}{run['started']:<27}{run['model_name'] or '-':<12}"
              f"{'yes' if run['all_passed'] else 'no':<8}{run['boards'] or '-'}")
    return 0


def cmd_baseline_set(args: argparse.Namespace) -> int:
    pinned = _history(args).pin(args.run_id, args.pool)
    for board, variant in pinned:
        print(f"baseline of {board} {variant}: run {args.run_id}")
    return 0 if pinned else 1


def _load_results(args: argparse.Namespace, run_id: str) -> dict:
    import json

    path = Path(args.out) / run_id / "results.json"
    if path.is_file():
        return json.loads(path.read_text())
    return _history(args).load_run(run_id)


def compare_runs(before: dict, after: dict, rule: str, alpha: float) -> list[dict]:
    """Board x variant x figure between two runs, each with change and verdict."""
    from farm.stats import latency_change, parse_rule

    figures = dict(parse_rule(rule))
    figures.setdefault("p50", next(iter(figures.values())))
    rows = []
    old_boards = {b["name"]: b for b in before["boards"]}
    for board in after["boards"]:
        for variant, entry in board.get("variants", {}).items():
            old = old_boards.get(board["name"], {}).get("variants", {}).get(variant)
            if not old or not old.get("samples_ms") or not entry.get("samples_ms"):
                continue
            for figure, threshold in figures.items():
                rows.append({"board": board["name"], "variant": variant, "unit": "ms",
                             **latency_change(old["samples_ms"], entry["samples_ms"], figure, threshold, alpha)})
            if old.get("peak_rss_mb") and entry.get("peak_rss_mb"):
                change = (entry["peak_rss_mb"] - old["peak_rss_mb"]) / old["peak_rss_mb"] * 100
                rows.append({"board": board["name"], "variant": variant, "figure": "peak_rss_mb", "unit": "MB",
                             "baseline": old["peak_rss_mb"], "new": entry["peak_rss_mb"], "change_pct": change,
                             "verdict": "regression" if change > 10 else "same"})
    return rows


def cmd_compare(args: argparse.Namespace) -> int:
    rows = compare_runs(_load_results(args, args.run_a), _load_results(args, args.run_b), args.rule, args.alpha)
    print(f"{'board':<12}{'variant':<14}{'figure':<13}{args.run_a[:20]:>21}{args.run_b[:20]:>21}{'change':>9}  verdict")
    for row in rows:
        print(f"{row['board']:<12}{row['variant']:<14}{row['figure']:<13}{row['baseline']:>21.4f}{row['new']:>21.4f}"
              f"{row['change_pct']:>+8.1f}%  {row['verdict']}")
    if not rows:
        print("no board x variant measured in both runs")
    return 1 if any(r["verdict"] == "regression" for r in rows) else 0


def cmd_nightly(args: argparse.Namespace) -> int:
    import json

    code = cmd_run(args)
    latest = Path(args.out) / "latest" / "results.json"
    if code in (0, 1) and latest.is_file():
        results = json.loads(latest.read_text())
        print("regression against each board's baseline:")
        for board in results["boards"]:
            for variant, entry in board.get("variants", {}).items():
                for check in entry["checks"]:
                    if check["item"] == "regression":
                        print(f"  {board['name']:<12}{variant:<14}{check['status']:<6}{check['why']}")
    return code


def cmd_signoff(args: argparse.Namespace) -> int:
    from farm import signoff
    from farm.errors import SignoffError

    if args.target == "verify":
        if not args.file:
            raise ConfigError("usage: farm signoff verify SIGNOFF.json [--model MODEL.onnx]")
        differences = signoff.verify(Path(args.file), Path(args.model) if args.model else None)
        for line in differences:
            print(f"DIFFERS: {line}")
        if not differences:
            print(f"{args.file}: verified" + (f"; {args.model} is the signed model" if args.model else ""))
        return 1 if differences else 0
    if not args.by:
        raise ConfigError("farm signoff RUN_ID needs --by NAME")
    try:
        path = signoff.sign(Path(args.out) / args.target, args.by, args.note)
    except SignoffError as exc:
        print(exc)
        return 1
    print(f"signed off: {path} and {path.with_suffix('.html')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from farm.job import DEFAULT_INVENTORY, DEFAULT_NIGHTLY_CHECKLIST
    from farm.options import RUN_OPTIONS, SELECTION, add_to_argparse

    parser = argparse.ArgumentParser(prog="farm", description="edge-AI device test farm")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the checklist suite (or your suites) on the boards; report under results/")
    run.add_argument("suites", nargs="*", help="pytest files or folders (default: the deployment checklist)")
    add_to_argparse(run)
    run.add_argument("--pytest-args", dest="pytest_args", nargs=argparse.REMAINDER, default=[],
                     help="everything after this goes to pytest")
    run.set_defaults(func=cmd_run)

    nightly = sub.add_parser("nightly", help="run on a pool, compare with each board's baseline; exit 1 on failure "
                                             "or regression")
    add_to_argparse(nightly)

    nightly.set_defaults(func=cmd_nightly, suites=[], pytest_args=[], checklist=str(DEFAULT_NIGHTLY_CHECKLIST),
                         rounds=3)

    add_quantize(sub)

    history = sub.add_parser("history", help="list recorded runs")
    history.add_argument("--board")
    history.add_argument("--model")
    history.add_argument("--limit", type=int, default=30)
    history.add_argument("--out", default="results")
    history.add_argument("--history", default="")
    history.set_defaults(func=cmd_history)

    baseline = sub.add_parser("baseline", help="pin baselines").add_subparsers(dest="baseline", required=True)
    pin = baseline.add_parser("set", help="make RUN_ID the baseline of its boards")
    pin.add_argument("run_id")
    pin.add_argument("--pool", help="only the boards of this pool")
    pin.add_argument("--out", default="results")
    pin.add_argument("--history", default="")
    pin.set_defaults(func=cmd_baseline_set)

    compare = sub.add_parser("compare", help="board x variant x figure between two runs")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--rule", default="p95:10%", help="threshold, e.g. p95:10%% or p50:5%%,p95:10%%")
    compare.add_argument("--alpha", type=float, default=0.01, help="significance level (Mann-Whitney U)")
    compare.add_argument("--out", default="results")
    compare.add_argument("--history", default="")
    compare.set_defaults(func=cmd_compare)

    signoff = sub.add_parser("signoff", help="sign off a run (farm signoff RUN_ID --by NAME), or verify a record "
                                             "(farm signoff verify FILE [--model PATH])")
    signoff.add_argument("target", help="RUN_ID, or 'verify'")
    signoff.add_argument("file", nargs="?", help="with verify: the signoff.json")
    signoff.add_argument("--by", help="who signs off")
    signoff.add_argument("--note")
    signoff.add_argument("--model", help="with verify: the model file to check against the record")
    signoff.add_argument("--out", default="results")
    signoff.set_defaults(func=cmd_signoff)

    probe = sub.add_parser("probe", help="connect to the boards and report what they have")
    add_to_argparse(probe, SELECTION + tuple(o for o in RUN_OPTIONS if o.name == "out"))
    probe.set_defaults(func=cmd_probe)

    lab = sub.add_parser("lab", help="stand-in boards on this machine").add_subparsers(dest="lab", required=True)
    up = lab.add_parser("up", help="start the stand-ins of an inventory (default local.yaml) or N plain ones")
    up.add_argument("--boards", type=int, help="start N plain stand-ins sim-01..sim-N instead")
    up.add_argument("--cores", type=int, help="with --boards / --arm: cores per stand-in")
    up.add_argument("--arm", action="append", default=[], choices=("cortex-a53", "cortex-a72", "cortex-a76"),
                    help="an emulated Arm stand-in of this CPU (QEMU; repeatable)")
    up.add_argument("--full-system", action="store_true",
                    help="with --arm: a full-system VM (its own arm64 kernel and sshd) instead of qemu-user")
    up.add_argument("--inventory", default=str(DEFAULT_INVENTORY))
    up.set_defaults(func=cmd_lab_up)
    down = lab.add_parser("down", help="stop the stand-ins this machine's lab started")
    down.add_argument("names", nargs="*", help="only these (default: all)")
    down.set_defaults(func=cmd_lab_down)
    lab.add_parser("status", help="list running stand-ins").set_defaults(func=cmd_lab_status)

    inventory = sub.add_parser("inventory", help="check or list an inventory").add_subparsers(dest="inv", required=True)
    check = inventory.add_parser("check", help="validate (exit 0 / 2)")
    check.add_argument("file")
    check.set_defaults(func=cmd_inventory_check)
    listing = inventory.add_parser("list", help="list the boards")
    listing.add_argument("file")
    listing.add_argument("--pool", action="append", default=[])
    listing.add_argument("--tag", action="append", default=[])
    listing.add_argument("--board", action="append", default=[])
    listing.set_defaults(func=cmd_inventory_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        say(f"farm: error: {exc}")
        return 2
    except FarmError as exc:
        say(f"farm: {exc}")
        return 1
    except KeyboardInterrupt:
        say("farm: interrupted; results gathered so far are kept")
        return 130


if __name__ == "__main__":
    sys.exit(main())
