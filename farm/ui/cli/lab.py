"""`farm lab` (stand-ins on this machine) and `farm inventory` (check and list)."""

from __future__ import annotations

import argparse

from farm import resources
from farm.ui.cli.common import say


def _lab():
    from farm.lab.standins import Lab

    return Lab(progress=lambda m: say(f"lab: {m}"))


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
    lab = _lab()
    running = lab.running()
    for name, entry in running.items():
        print(f"{name:<12} 127.0.0.1:{entry['port']}  pid {entry['pid']}  cores {entry.get('cores') or '-'}  "
              f"memory {entry.get('memory_mb') or '-'} MB")
    print(f"{len(running)} stand-in(s) up; inventory: {lab.dir / 'inventory.yaml'}")
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
