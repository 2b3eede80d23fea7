"""What every command shares: diagnostics on stderr."""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """Progress and diagnostics go to stderr; stdout carries results."""
    print(message, file=sys.stderr, flush=True)
