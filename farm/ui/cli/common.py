"""What every command shares: diagnostics on stderr."""

from __future__ import annotations

import sys

from farm.util import printable


def say(message: str) -> None:
    """Progress and diagnostics go to stderr; stdout carries results. A board's words in them (an error)
    never reach the terminal as escapes."""
    print(printable(message), file=sys.stderr, flush=True)

