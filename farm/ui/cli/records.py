"""`farm history`, `farm baseline`, `farm compare`, `farm signoff`: what was recorded, and what it means."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from farm import resources
from farm.errors import ConfigError


def _history(args: argparse.Namespace):
    from farm.config.settings import history_url
    from farm.record.history import History

    url = history_url(args.out, args.history)
    if url is None:
        raise ConfigError("--history none: there is no history to read")
    return History(url)


def _load_run(args: argparse.Namespace, run_id: str):
    from farm.results import RunResult

    path = Path(args.out) / run_id / "results.json"
    if path.is_file():
        return RunResult.from_json(json.loads(path.read_text()))
    return _history(args).load_run(run_id)


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


def cmd_compare(args: argparse.Namespace) -> int:
    from farm.config.checklist import load_checklist
    from farm.judge.compare import compare_runs

    rules = load_checklist(args.checklist).items.get("regression")
    if rules is None:
        raise ConfigError(f"{args.checklist}: has no regression item to compare by")
    rows = compare_runs(_load_run(args, args.run_a), _load_run(args, args.run_b), args.rule or rules["rule"],
                        args.alpha if args.alpha is not None else rules["alpha"], rules["max_memory_increase_pct"])
    print(f"{'board':<12}{'variant':<14}{'figure':<13}{args.run_a[:20]:>21}{args.run_b[:20]:>21}{'change':>9}  verdict")
    for row in rows:
        print(f"{row['board']:<12}{row['variant']:<14}{row['figure']:<13}{row['baseline']:>21.4f}{row['new']:>21.4f}"
              f"{row['change_pct']:>+8.1f}%  {row['verdict']}")
    if not rows:
        print("no board x variant measured in both runs")
    return 1 if any(r["verdict"] == "regression" for r in rows) else 0


def cmd_signoff(args: argparse.Namespace) -> int:
    from farm.errors import SignoffError
    from farm.record import signoff

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


def _store_options(parser) -> None:
    parser.add_argument("--out", default="results", help="results root (default: results)")
    parser.add_argument("--history", default="", help="history store (default <out>/history.sqlite)")


def register(sub) -> None:
    history = sub.add_parser("history", help="list recorded runs")
    history.add_argument("--board")
    history.add_argument("--model")
    history.add_argument("--limit", type=int, default=30)
    _store_options(history)
    history.set_defaults(func=cmd_history)

    baseline = sub.add_parser("baseline", help="pin baselines").add_subparsers(dest="baseline", required=True)
    pin = baseline.add_parser("set", help="make RUN_ID the baseline of its boards")
    pin.add_argument("run_id")
    pin.add_argument("--pool", help="only the boards of this pool")
    _store_options(pin)
    pin.set_defaults(func=cmd_baseline_set)

    compare = sub.add_parser("compare", help="board x variant x figure between two runs, by the checklist's "
                                             "regression rules")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--checklist", default=str(resources.checklist("dms-nightly")),
                         help="checklist whose regression item gives the rules (default: the nightly one)")
    compare.add_argument("--rule", help="override the threshold, e.g. p95:10%% or p50:5%%,p95:10%%")
    compare.add_argument("--alpha", type=float, help="override the significance level (Mann-Whitney U)")
    _store_options(compare)
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
