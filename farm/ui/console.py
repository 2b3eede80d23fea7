"""What farm says on the terminal: its records on stderr, `farm: <message>`, as many as -v / -q ask.

One handler on farm's logger for a command's duration (`console`). It writes to `sys.stderr` as that is
at each record, as print did: pytest's capture gets them, and so does rich's live table, which prints them
above itself. A board's session's records are its log file's; the console shows them
(`farm: <board>: <message>`) only with -v: by default the live table says what each board does.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

from farm.record.boardlog import board_of
from farm.util import printable


def level(verbose: bool = False, quiet: bool = False) -> int:
    """-v: debug lines and each board's records; -q: warnings and errors only."""
    return logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        """A board's words never reach the terminal as escapes."""
        board = board_of(record)
        return printable(f"farm: {board + ': ' if board else ''}{super().format(record)}")


class ConsoleHandler(logging.Handler):
    def __init__(self, level: int = logging.INFO):
        super().__init__(level)
        self.setFormatter(ConsoleFormatter())
        self.addFilter(lambda record: board_of(record) is None or self.level <= logging.DEBUG)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def console(at: int = logging.INFO) -> Iterator[None]:
    """farm's records on stderr while the block runs; inside another such block (the pytest plugin under
    `farm run`), that one's handler, at its level, says them."""
    farm = logging.getLogger("farm")
    if any(isinstance(handler, ConsoleHandler) for handler in farm.handlers):
        yield
        return
    handler = ConsoleHandler(at)
    farm.addHandler(handler)
    try:
        yield
    finally:
        farm.removeHandler(handler)


@contextlib.contextmanager
def kept_from_pytest() -> Iterator[None]:
    """farm's records to farm's handlers only while the block runs: the run's lines are on the console
    already, and pytest's log capture would print them all again with the first test's failure."""
    farm = logging.getLogger("farm")
    before, farm.propagate = farm.propagate, False
    try:
        yield
    finally:
        farm.propagate = before
