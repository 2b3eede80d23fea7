"""`farm lab` (stand-ins on this machine) and `farm inventory` (check and list)."""

from __future__ import annotations

import argparse
import logging

from farm import resources
from farm.config.options import OUT, SELECTION, add_to_argparse, resolve
from farm.errors import ConfigError, HistoryError
from farm.statuses import UNFIT
from farm.ui.cli.upkeep import register_marks
from farm.util import new_run_id

log = logging.getLogger(__name__)


def _lab():
    from farm.lab.standins import Lab

    return Lab()


def cmd_lab_up(args: argparse.Namespace) -> int:
    from farm.config.inventory import StandinSpec, load_inventory

    if args.boards or args.arm:
        specs = [StandinSpec(f"sim-{i:02d}", cores=args.cores) for i in range(1, (args.boards or 0) + 1)]
        specs += [StandinSpec(f"{cpu.replace('cortex-', '')}-{'vm' if args.full_system else 'qemu'}", cores=args.cores,
                              arch="arm64", full_system=args.full_system, fields=(("class", cpu),))
                  for cpu in args.arm]
    else:
        specs = load_inventory(args.inventory).standins
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
    import time

    from farm.board.lease import read_holder

    lab = _lab()
    for name in lab.reap_orphans():
        print(f"{name:<12} stopped: the run that started it is gone")
    running = lab.running()
    for name, entry in running.items():
        lock = lab.lock_file(name, entry)
        holder = read_holder(lock.read_text(), int(time.time())) if lock and lock.is_file() else None
        print(f"{name:<12} 127.0.0.1:{entry['port']}  pid {entry['pid']}  cores {entry.get('cores') or '-'}  "
              f"memory {entry.get('memory_mb') or '-'} MB  {'locked by ' + holder if holder else 'free'}")
    print(f"{len(running)} stand-in(s) up; inventory: {lab.dir / 'inventory.yaml'}")
    for name, row in _unfit_boards().items():
        print(f"{name:<12} {row['state']} since {row['since']}: {row['reason']}")
    return 0


def _unfit_boards() -> dict[str, dict]:
    """Bad and retired boards, from the default history (results/history.sqlite) when there is one."""
    from pathlib import Path

    from farm.record.history import History

    path = Path("results") / "history.sqlite"
    if not path.is_file():
        return {}
    try:
        return {n: r for n, r in History(path).health().items() if r["state"] in UNFIT}
    except HistoryError as exc:
        log.warning(f"board health unknown: {exc}")
        return {}


def cmd_lab_power(args: argparse.Namespace) -> int:
    """A stand-in's power outlet, for a pdudaemon's localcmdline driver: off hangs it, on cold-starts it."""
    _lab().power(args.name, args.action)
    print(f"{args.name}: power {args.action}")
    return 0


def cmd_inventory_check(args: argparse.Namespace) -> int:
    from farm.config.inventory import load_inventory

    inventory = load_inventory(args.file)
    print(f"{args.file}: ok, {len(inventory.boards)} board(s), {len(inventory.standins)} stand-in(s)")
    return 0


def cmd_inventory_list(args: argparse.Namespace) -> int:
    from farm.config.inventory import load_inventory

    inventory = load_inventory(args.file)
    print(f"{'name':<14}{'address':<34}{'class':<13}{'pools':<20}{'providers'}")
    for board in inventory.select(args.pool, args.tag, args.board):
        print(f"{board.name:<14}{board.address:<34}{board.board_class or '-':<13}{','.join(board.pools) or '-':<20}"
              f"{','.join(board.providers)}")
    for standin in inventory.select_standins(args.pool, args.tag, args.board):
        values = standin.values
        print(f"{standin.name:<14}{'(stand-in, started by farm)':<34}{values.get('class', '-'):<13}"
              f"{','.join(values.get('pools', ())) or '-':<20}")
    return 0


def cmd_boards_clean(args: argparse.Namespace) -> int:
    """Free board disk: blobs that none of the newest runs used (each board locked while it is cleaned)."""
    from pathlib import Path

    from farm.deploy.fanout import Fanout
    from farm.deploy.selection import Selection
    from farm.deploy.session import DeployPlan
    from farm.record.rundir import RunDir
    from farm.ui.progress import BoardProgress

    if args.keep_runs < 0:
        raise ConfigError(f"--keep-runs {args.keep_runs}: must be 0 or more")
    value = {n: s.value for n, s in resolve(lambda name: getattr(args, name, None)).items()}
    inventory = args.inventory_file or value["inventory"] or resources.standin_inventory()
    selection = Selection(Path(inventory), value["pool"], value["tag"], value["board"])
    run_id = new_run_id()
    with selection.standins_up() as boards, BoardProgress(selection.names) as progress:
        group = Fanout(DeployPlan.clean(run_id, args.keep_runs), RunDir(Path(value["out"]) / ".clean", run_id),
                       progress.update).run(boards)
    for result in group:
        freed = result.facts.get("freed_bytes")
        print(f"{result.name:<14}{result.status.value:<18}" +
              (f"freed {freed / 1e6:.1f} MB" if result.ok and freed >= 100_000 else f"freed {freed} bytes"
               if result.ok else str(result.error)))
    return 0 if not group.failed else 1


def cmd_lab_clean(args: argparse.Namespace) -> int:
    lab = _lab()
    for name in lab.reap_orphans():
        print(f"stopped {name}: the run that started it is gone")
    args.inventory_file = str(lab.dir / "inventory.yaml") if lab.running() else None
    if args.inventory_file is None:
        print("no stand-in running: nothing else to clean")
        return 0
    return cmd_boards_clean(args)


def register(sub) -> None:
    lab = sub.add_parser("lab", help="stand-in boards on this machine").add_subparsers(dest="lab", required=True)
    up = lab.add_parser("up", help="start the stand-ins of an inventory (default: the built-in ones) or N plain ones")
    up.add_argument("--boards", type=int, help="start N plain stand-ins sim-01..sim-N instead")
    up.add_argument("--cores", type=int, help="with --boards / --arm: cores per stand-in")
    up.add_argument("--arm", action="append", default=[], choices=("cortex-a53", "cortex-a72", "cortex-a76"),
                    help="an emulated Arm stand-in of this CPU (QEMU; repeatable)")
    up.add_argument("--full-system", action="store_true",
                    help="with --arm: a full-system VM (its own arm64 kernel and sshd) instead of qemu-user")
    up.add_argument("--inventory", default=str(resources.standin_inventory()))
    up.set_defaults(func=cmd_lab_up)
    down = lab.add_parser("down", help="stop the stand-ins this machine's lab started")
    down.add_argument("names", nargs="*", help="only these (default: all)")
    down.set_defaults(func=cmd_lab_down)
    lab.add_parser("status", help="list running stand-ins and who holds each").set_defaults(func=cmd_lab_status)
    lab_power = lab.add_parser("power", help="a stand-in's power outlet: off freezes its sshd (the board hangs), "
                                             "on starts it afresh (a new boot id)")
    lab_power.add_argument("action", choices=("on", "off"))
    lab_power.add_argument("name")
    lab_power.set_defaults(func=cmd_lab_power)
    lab_clean = lab.add_parser("clean", help="stop stand-ins a dead run left, free the running ones' old blobs")
    lab_clean.add_argument("--keep-runs", type=int, default=3, help="keep the blobs of this many newest runs")
    lab_clean.set_defaults(func=cmd_lab_clean, pool=None, tag=None, board=None, out=None)

    boards = sub.add_parser("boards", help="board maintenance").add_subparsers(dest="boards", required=True)
    boards_clean = boards.add_parser("clean", help="free board disk: blobs none of the newest runs used")
    add_to_argparse(boards_clean, SELECTION + (OUT,))
    boards_clean.add_argument("--keep-runs", type=int, default=3, help="keep the blobs of this many newest runs")
    boards_clean.set_defaults(func=cmd_boards_clean, inventory_file=None)
    register_marks(boards)

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
