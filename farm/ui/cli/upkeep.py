"""`farm power` and `farm health`: switching a board's power, and knowing which boards are fit to measure."""

from __future__ import annotations

import argparse
from pathlib import Path

from farm import resources
from farm.config import options
from farm.config.options import BY_NAME, OUT, SELECTION, add_to_argparse
from farm.config.settings import history_url
from farm.errors import ConfigError, FarmError
from farm.statuses import HealthState
from farm.ui.cli.run import resolved


def _board(inventory: str | None, name: str):
    from farm.config.inventory import load_inventory

    path = Path(inventory or resources.standin_inventory())
    board = load_inventory(path).declared(name)
    if board is None:
        raise ConfigError(f"{path}: no board named {name!r}")
    return board


def cmd_power(args: argparse.Namespace) -> int:
    """Switch a board on, off, or cycle it; with --wait, until it answers SSH with a new boot id."""
    from farm.board.connect import open_transport
    from farm.board.power import switch, wait_for_boot
    from farm.board.probe import boot_id

    board = _board(args.inventory, args.board)
    if board.power is None:
        raise ConfigError(f"{args.board}: no power control: add power: to its inventory entry "
                          "(docs/power-and-health.md)")
    before = None
    if args.wait and args.action == "cycle":
        try:
            with open_transport(board, connect_timeout=5, attempts=1) as transport:
                before = boot_id(transport)
        except FarmError:
            pass  # a hung board: any answer after the cycle will do
    switch(board, args.action)
    print(f"{board.name}: power {args.action} asked of {board.power.describe()}")
    if args.wait and args.action in ("on", "cycle"):
        took = wait_for_boot(board, before)
        print(f"{board.name}: answering again after {took:.0f} s")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """The reference job on the selected boards (bad ones too); each board's health recorded in the history."""
    from farm.deploy.health import check

    settings = options.run_settings(resolved(args))
    verdicts = check(settings)
    for verdict in verdicts:
        print(f"{verdict.board:<14}{verdict.state:<6}{verdict.reason}")
    return 0 if all(v.healthy for v in verdicts) else 1


def _mark(args: argparse.Namespace, state: HealthState) -> int:
    import getpass

    from farm.record.history import History

    url = history_url(args.out, args.history)
    if url is None:
        raise ConfigError("--history none: board health lives in the history; give one")
    # A person's restore is their word that the board is sound as it is now (a new image, a new cooler): its
    # health figures start afresh, or the next check would judge it against the level it had before.
    History(url).set_health(args.board, state, f"{'retired' if state == HealthState.RETIRED else 'restored'} by "
                                               f"{getpass.getuser()}" + (f": {args.reason}" if args.reason else ""),
                            forget_figures=state == HealthState.GOOD)
    print(f"{args.board}: {state}" + ("; its health figures start afresh (its level is learnt from its next "
                                       "checks)" if state == HealthState.GOOD else ""))
    return 0


def cmd_boards_retire(args: argparse.Namespace) -> int:
    return _mark(args, HealthState.RETIRED)


def cmd_boards_restore(args: argparse.Namespace) -> int:
    return _mark(args, HealthState.GOOD)


def register_marks(boards) -> None:
    """`farm boards retire|restore`: a person's word on a board, in the history every controller reads."""
    for name, func, text in (("retire", cmd_boards_retire, "leave a board out of every run until restored"),
                             ("restore", cmd_boards_restore, "put a bad or retired board back into selection")):
        mark = boards.add_parser(name, help=text)
        mark.add_argument("board")
        mark.add_argument("--reason", help="why, for the history and `farm lab status`")
        mark.add_argument("--out", default="results", help="results root (its history.sqlite)")
        mark.add_argument("--history", default="", help="history store (default <out>/history.sqlite)")
        mark.set_defaults(func=func)


def register(sub) -> None:
    health = sub.add_parser("health", help="run the reference job on boards; a failing one becomes bad "
                                           "(out of selection) until a check passes")
    add_to_argparse(health, SELECTION + (OUT, BY_NAME["history"], BY_NAME["wait"]))
    health.set_defaults(func=cmd_health)
    power = sub.add_parser("power", help="switch a board's power (its inventory's power: entry)")
    power.add_argument("action", choices=("on", "off", "cycle"))
    power.add_argument("board")
    power.add_argument("--inventory", help="inventory YAML (default: the built-in stand-ins)")
    power.add_argument("--wait", action="store_true", help="with on / cycle: until the board answers SSH again")
    power.set_defaults(func=cmd_power)
