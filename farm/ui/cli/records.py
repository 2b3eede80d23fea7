"""`farm history`, `farm baseline`, `farm compare`, `farm signoff sign|verify`: what was recorded, and what it means."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from farm import resources
from farm.config.options import BY_NAME, HELD_TO, OUT, SIGNOFF_OPTIONS, add_to_argparse, resolve
from farm.config.project import find_project_config, release_policy
from farm.config.settings import history_url
from farm.errors import ConfigError, HistoryError, SignoffError
from farm.results import RunResult
from farm.statuses import Change

if TYPE_CHECKING:
    from farm.config.checklist import Checklist

# Where records are: the same two options, resolved the same way, as `farm run`'s.
STORE_OPTIONS = (OUT, BY_NAME["history"])
# Signing resolves the key, allowed_signers and what the run is held to; verifying, allowed_signers only.
SIGN_OPTIONS = SIGNOFF_OPTIONS + HELD_TO
VERIFY_OPTIONS = tuple(o for o in SIGNOFF_OPTIONS if o.name == "allowed-signers")
SIGNOFF_USAGE = ("usage: farm signoff sign RUN_ID [--dry-run] [--signing-key KEY] | "
                 "farm signoff verify SIGNOFF.json|RUN_DIR [--model MODEL.onnx] [--record-only]")


def _history(args: argparse.Namespace):
    from farm.record.history import History

    url = history_url(args.out, args.history)
    if url is None:
        raise ConfigError("--history none: there is no history to read")
    return History(url)


def _load_run(args: argparse.Namespace, run_id: str):
    path = Path(args.out) / run_id / "results.json"
    if path.is_file():
        try:
            return RunResult.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a farm results document ({exc}); restore it from the run's "
                              "copy in the history, or compare another run") from exc
    return _history(args).load_run(run_id)


def _print_changes(args: argparse.Namespace) -> int:
    """`farm history --changes`: each series' change points, where they began, how large, how sure."""
    from farm.judge.changes import series_changes

    history = _history(args)
    figures = args.figure or ["p50", "p95", "peak_rss_mb"]
    print(f"{'board':<16}{'variant':<14}{'model':<12}{'figure':<13}{'began in run':<24}{'started (UTC)':<27}"
          f"{'before':>10}{'after':>10}{'change':>9}  p-value")
    found = 0
    for board, variant, model in history.series_keys(args.board, args.variant, args.model):
        rows = history.series(board, variant, model, limit=args.limit or 200)
        for figure in figures:
            for change in series_changes(rows, figure, alpha=args.alpha, min_change_pct=args.min_change):
                found += 1
                print(f"{board:<16}{variant:<14}{model or '-':<12}{figure:<13}{change['run_id']:<24}"
                      f"{change['started']:<27}{change['before']:>10.4g}{change['after']:>10.4g}"
                      f"{change['change_pct']:>+8.1f}%  {change['p_value']:.4f}")
    if not found:
        print(f"no change point at p <= {args.alpha} and {args.min_change} % or more"
              + "".join(f" for {k} {v}" for k, v in (("board", args.board), ("variant", args.variant),
                                                      ("model", args.model)) if v))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    if args.changes:
        return _print_changes(args)
    if args.signoffs:
        rows = _history(args).signoffs(model=args.model, limit=args.limit or 30)
        print(f"{'run':<24}{'signed (UTC)':<27}{'model':<12}{'model sha256':<18}{'checklist':<14}signer")
        for row in rows:
            print(f"{row['run_id']:<24}{row['signed_at']:<27}{row['model_name'] or '-':<12}"
                  f"{(row['model_sha256'] or '-')[:16]:<18}{row['checklist'] or '-':<14}{row['principal']}")
        if not rows:
            print("no sign-off recorded" + (f" for model {args.model}" if args.model else ""))
        return 0
    runs = _history(args).runs(board=args.board, model=args.model, limit=args.limit or 30)
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
    return 1 if any(r["verdict"] == Change.REGRESSION for r in rows) else 0


def _signing(args: argparse.Namespace, options: tuple) -> tuple[Path, dict, Checklist | None]:
    """allowed_signers (command line > FARM_* > [tool.farm] > allowed_signers beside it), the other `options`
    resolved the same way, and the project's pinned release policy (or None)."""
    project = find_project_config()
    found = resolve(lambda name: getattr(args, name, None), project=project, options=options)
    allowed = found["allowed_signers"].value
    default = (project.folder if project else Path.cwd()) / "allowed_signers"
    return Path(allowed) if allowed else default, found, release_policy(project)


def _held_to(found: dict, release: Checklist | None) -> Checklist:
    """The checklist a sign-off holds the run to: --checklist, else the pinned release policy, else
    FARM_CHECKLIST or [tool.farm] checklist, else the packaged dms checklist; never the run's own choice."""
    from farm.config.checklist import load_checklist

    setting = found["checklist"]
    if release is not None and setting.source != "command line":
        return release
    return load_checklist(setting.value or resources.checklist("dms"))


def _print_verification(args: argparse.Namespace, found) -> None:
    for line in found.notes:
        print(f"note: {line}")
    for line in found.problems:
        print(f"FAILS: {line}")
    print(f"policy: signed under {found.policy}"
          + (f"; the pinned release policy is {found.release.name} (sha256 {found.release.sha256})" if found.release
             else "; no release policy pinned (release_policy in [tool.farm]): not checked as a release"))
    if found.verified:
        signer = found.record["signer"]
        print(f"{args.file}: verified{' as a release' if found.release else ''}"
              f"{' (record only: the run folder was not compared)' if found.record_only else ''}: signed by "
              f"{signer['principal']} ({signer['key']}) at {found.record['signed_at']}; every verdict agrees with "
              "its figures" + (f"; {args.model} is the signed model" if args.model else ""))


def cmd_signoff_verify(args: argparse.Namespace) -> int:
    """`farm signoff verify FILE|RUN_DIR`: 0 verified, 1 does not verify (each reason on a FAILS: line)."""
    from farm.record import signoff

    allowed_signers, _, release = _signing(args, VERIFY_OPTIONS)
    found = signoff.verify(Path(args.file), allowed_signers, Path(args.model) if args.model else None,
                           release=release, record_only=args.record_only)
    _print_verification(args, found)
    return 0 if found.verified else 1


def _signoff_history(args: argparse.Namespace):
    """The history that re-derives regression verdicts and keeps the sign-off; None (said) when there is none."""
    if args.history == "none":
        return None
    from farm.config.settings import history_url
    from farm.record.history import History

    try:
        return History(history_url(args.out, args.history))
    except HistoryError as exc:
        print(f"note: no history ({exc}): regression verdicts cannot be re-derived, the sign-off not stored")
        return None


def _print_review(found, checklist: Checklist, release: Checklist | None) -> None:
    print(f"policy: {checklist.name} (sha256 {checklist.sha256}) from {checklist.path}")
    if release is not None and checklist.sha256 != release.sha256:
        print(f"note: not the pinned release policy {release.name} (sha256 {release.sha256}): a record signed "
              "under it does not verify as a release")
    for line in found.policy.notes:
        print(f"note: {line}")


def _refused(args: argparse.Namespace, found) -> int:
    """--dry-run's list of what stands against signing, or a refusal's: 1 when refused."""
    if args.dry_run:
        for line in found.reasons():
            print(f"MISSING: {line}")
        print(f"dry run: run {args.run_id} would be {'refused' if found.refused else 'signed'} "
              f"({len(found.reasons())} reason(s) against); nothing written")
    elif found.refused:
        print(f"sign-off refused for run {args.run_id}: {len(found.reasons())} reason(s):")
        for line in found.reasons():
            print(f"  {line}")
    return 1 if found.refused else 0


def _sign(args: argparse.Namespace, found, key: Path, allowed_signers: Path, history) -> int:
    """The record, its signature and its page written beside the run; the record kept in the history."""
    from farm.record import signoff
    from farm.ui.signoffpage import render

    try:
        record, path = signoff.sign(found, key=key, allowed_signers=allowed_signers, principal=args.by,
                                    note=args.note)
    except SignoffError as exc:
        print(exc)
        return 1
    page = path.with_name("signoff.html")
    page.write_text(render(record))
    print(f"signed off by {record['signer']['principal']}: {path}, {path.name}.sig and {page}")
    if history is not None:
        try:
            history.record_signoff(record, path.with_name(path.name + ".sig").read_text())
        except HistoryError as exc:
            print(f"note: the sign-off is not in the history ({exc}); its files are")
    return 0


def cmd_signoff_sign(args: argparse.Namespace) -> int:
    """`farm signoff sign RUN_ID`: review the run against the signer's checklist and inventory, then sign."""
    from farm.record import signoff

    allowed_signers, settings, release = _signing(args, SIGN_OPTIONS)
    checklist = _held_to(settings, release)
    inventory = settings["inventory"].value or resources.standin_inventory()
    history = _signoff_history(args)
    found = signoff.review(Path(args.out) / args.run_id, checklist=checklist, inventory=Path(inventory),
                           history=history)
    _print_review(found, checklist, release)
    if args.dry_run or found.refused:
        return _refused(args, found)
    key = settings["signing_key"].value
    if not key:
        raise ConfigError("farm signoff sign needs the signer's SSH key: --signing-key PATH (or FARM_SIGNING_KEY, "
                          "or signing_key in [tool.farm])")
    return _sign(args, found, Path(key), allowed_signers, history)


def _signoff_usage(args: argparse.Namespace) -> int:
    raise ConfigError(SIGNOFF_USAGE)


def _store_options(parser, command):
    """--out and --history from the option table; the command sees them resolved (command line > FARM_* >
    [tool.farm] > default), so `history = "none"` in a project makes `farm history` read, and create, nothing."""
    add_to_argparse(parser, STORE_OPTIONS)

    def resolved(args: argparse.Namespace) -> int:
        found = resolve(lambda name: getattr(args, name, None), project=find_project_config(), options=STORE_OPTIONS)
        args.out, args.history = found["out"].value, found["history"].value
        return command(args)
    parser.set_defaults(func=resolved)


def register(sub) -> None:
    history = sub.add_parser("history", help="list recorded runs")
    history.add_argument("--board")
    history.add_argument("--model", help="a model's name (with --signoffs: or its, or a variant's, sha256 prefix)")
    history.add_argument("--signoffs", action="store_true", help="the sign-offs recorded, newest first")
    history.add_argument("--changes", action="store_true",
                         help="change points of each board x variant's figures (binary segmentation, tested by "
                              "permutation): the run where each began, its size, its p-value")
    history.add_argument("--variant", help="with --changes: only this variant")
    history.add_argument("--figure", action="append", choices=("p50", "p95", "peak_rss_mb", "top1"),
                         help="with --changes: this figure (repeatable; default p50, p95, peak_rss_mb)")
    history.add_argument("--alpha", type=float, default=0.01, help="with --changes: significance (default 0.01)")
    history.add_argument("--min-change", type=float, default=5.0,
                         help="with --changes: the smallest change listed, in %% (default 5)")
    history.add_argument("--limit", type=int, help="runs listed (default 30); with --changes: runs per series "
                                                   "(default 200)")
    _store_options(history, cmd_history)

    baseline = sub.add_parser("baseline", help="pin baselines").add_subparsers(dest="baseline", required=True)
    pin = baseline.add_parser("set", help="make RUN_ID the baseline of its boards")
    pin.add_argument("run_id")
    pin.add_argument("--pool", help="only the boards of this pool")
    _store_options(pin, cmd_baseline_set)

    compare = sub.add_parser("compare", help="board x variant x figure between two runs, by the checklist's "
                                             "regression rules")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--checklist", default=str(resources.checklist("dms-nightly")),
                         help="checklist whose regression item gives the rules (default: the nightly one)")
    compare.add_argument("--rule", help="override the threshold, e.g. p95:10%% or p50:5%%,p95:10%%")
    compare.add_argument("--alpha", type=float, help="override the significance level (Mann-Whitney U)")
    _store_options(compare, cmd_compare)

    signoff = sub.add_parser("signoff", help="sign off a run (farm signoff sign RUN_ID), or verify a record "
                                             "(farm signoff verify FILE|RUN_DIR)")
    signoff.set_defaults(func=_signoff_usage)
    action = signoff.add_subparsers(dest="signoff", metavar="{sign,verify}")
    sign = action.add_parser("sign", help="hold a run to the signer's checklist and inventory, and sign it")
    sign.add_argument("run_id", help="the run's folder under --out (or latest)")
    sign.add_argument("--by", help="the signer's principal in allowed_signers (default: whom it names for the key)")
    sign.add_argument("--note", help="what the sign-off is for (release, ticket)")
    sign.add_argument("--dry-run", action="store_true", help="list everything that stands against signing; "
                                                             "write nothing")
    add_to_argparse(sign, SIGN_OPTIONS)
    _store_options(sign, cmd_signoff_sign)
    verify = action.add_parser("verify", help="check a sign-off record: signature, policy, time, verdicts, run folder")
    verify.add_argument("file", help="the signoff.json, or the run folder holding it")
    verify.add_argument("--model", help="the model file to check against the record")
    verify.add_argument("--record-only", action="store_true",
                        help="check the record alone, not the run folder it sits in (said in the verdict)")
    add_to_argparse(verify, VERIFY_OPTIONS)
    verify.set_defaults(func=cmd_signoff_verify)
