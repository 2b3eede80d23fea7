"""A board's log file, logs/<board>.log: the records of that board's session, and only those.

Boards run side by side, each session in a thread of its own, all logging to farm's loggers. A session
logs through `for_board` (each record names its board); `board_log` attaches, for the session's
duration, a file handler to farm's logger that keeps that board's records: its steps, the agent's stderr,
farm's tracebacks. The console shows them only with `farm -v`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

FORMAT = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")


def board_of(record: logging.LogRecord) -> str | None:
    """The board a record is about; None for the run's own records."""
    return getattr(record, "board", None)


def for_board(logger: logging.Logger, board: str) -> logging.LoggerAdapter[logging.Logger]:
    """`logger`, its records marked as `board`'s."""
    return logging.LoggerAdapter(logger, {"board": board})


@contextlib.contextmanager
def board_log(path: Path, board: str) -> Iterator[None]:
    """Append `board`'s records to `path` while the block runs, each line flushed as it is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(FORMAT)
    handler.addFilter(lambda record: board_of(record) == board)
    farm = logging.getLogger("farm")
    farm.addHandler(handler)
    try:
        yield
    finally:
        farm.removeHandler(handler)
        handler.close()
