"""Stopping a run the ways a lab stops one: Ctrl-C, SIGTERM (a CI cancel), SIGHUP (a closed terminal).

All three stop it the same way (agents killed on their boards, locks released,
everything collected written to results.json, the report and the history); a
further interrupt while that is written waits until it is on disk.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator

STOPPING = (signal.SIGTERM, signal.SIGHUP)
_stopped_by: list[int] = []  # the signals that stopped this process, in order
log = logging.getLogger(__name__)


def exit_code() -> int:
    """The shell's code for what stopped the run: 128 + the signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + (_stopped_by[0] if _stopped_by else signal.SIGINT)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does (signal handlers live in the main thread)."""
    if not _main_thread():
        yield
        return

    def handler(signum, frame):
        _stopped_by.append(signum)
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")

    previous = {number: signal.signal(number, handler) for number in STOPPING}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and the stopping signals until the block is done; then stop as asked."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []

    def handler(signum, frame):
        caught.append(signum)
        _stopped_by.append(signum)
        log.warning("stopping: writing what was collected first")

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, *STOPPING)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
    if caught:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(caught[0]).name}")
