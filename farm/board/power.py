"""A board's power: switched through a pdudaemon's HTTP API, or through the inventory's own commands.

pdudaemon (which LAVA and labgrid drive too) answers a request once its PDU
has done it; a cycle (`reboot`) is off, a pause, on. The board is back only
when it answers SSH with a new boot id (`wait_for_boot`), not when its outlet
is on again. labgrid's
PDUDaemonDriver sends the same three requests, but only inside a labgrid
target; these few lines over urllib need nothing else.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from farm.board.connect import open_transport
from farm.board.probe import boot_id
from farm.config.inventory import Board, Power
from farm.errors import FarmError, PowerError

ACTIONS = ("on", "off", "cycle")
REQUEST_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 60.0


def _pdudaemon(board: Board, power: Power, action: str) -> None:
    request = {"on": "on", "off": "off", "cycle": "reboot"}[action]
    query = {"hostname": power.pdu, "port": power.outlet}
    if request == "reboot":
        query["delay"] = str(max(1, round(power.off_s)))
    url = f"http://{power.pdudaemon}:{power.port}/power/control/{request}?{urllib.parse.urlencode(query)}"
    try:
        # A cycle is answered after its pause; pdudaemon retries a failing PDU (5 times, 5 s apart by default).
        timeout = REQUEST_TIMEOUT_S + (power.off_s if request == "reboot" else 0)
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:  # pdudaemon says 500 "Invalid request" for an unknown PDU
        raise PowerError(f"{board.name}: pdudaemon at {power.pdudaemon}:{power.port} refused {request} of PDU "
                         f"{power.pdu} outlet {power.outlet} "
                         f"(HTTP {exc.code}: {exc.read().decode(errors='replace').strip()}); "
                         "is the PDU in its configuration?") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise PowerError(f"{board.name}: pdudaemon at {power.pdudaemon}:{power.port} does not answer "
                         f"({getattr(exc, 'reason', exc)}); is it running?") from exc


def _command(board: Board, argv: tuple[str, ...], what: str) -> None:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PowerError(f"{board.name}: power {what} command {argv[0]!r} failed: {exc}") from exc
    if proc.returncode != 0:
        raise PowerError(f"{board.name}: power {what} command {argv[0]!r} exited {proc.returncode}: "
                         f"{(proc.stderr.strip() or proc.stdout.strip())[-300:]}")


def switch(board: Board, action: str) -> None:
    """Switch the board on, off, or cycle it (off, `off_s`, on). Returns once the switch was asked for."""
    power = board.power
    if power is None:
        raise PowerError(f"{board.name}: no power control (add power: to its inventory entry; "
                         "docs/power-and-health.md)")
    if power.pdudaemon:
        _pdudaemon(board, power, action)
        return
    if action in ("off", "cycle"):
        _command(board, power.off, "off")
    if action == "cycle":
        time.sleep(power.off_s)
    if action in ("on", "cycle"):
        _command(board, power.on, "on")


def wait_for_boot(board: Board, before: str | None, stopped: Callable[[], bool] = lambda: False) -> float:
    """Wait until the board answers SSH with a boot id other than `before`; the seconds it took.

    With `before` unknown (the board never answered), answering at all is enough."""
    started = time.monotonic()
    deadline = started + board.power.boot_s if board.power else started
    last = "it never answered"
    while time.monotonic() < deadline and not stopped():
        try:
            with open_transport(board, connect_timeout=5, attempts=1) as transport:
                now = boot_id(transport)
            if now and now != before or before is None and now:
                return time.monotonic() - started
            last = "it still answers with the boot id from before the cycle"
        except FarmError as exc:
            last = str(exc)
        time.sleep(1.0)
    raise PowerError(f"{board.name}: did not come back within {board.power.boot_s if board.power else 0:.0f} s of "
                     f"the power cycle ({last})")
