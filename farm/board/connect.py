"""The transport an inventory entry asks for (`transport: ssh | local`), not yet opened.

A module of its own, above `transport` (the protocol and what both share) and its
implementations `ssh` and `local`, so that neither imports the other back.
"""

from __future__ import annotations

from farm.board.local import LocalTransport
from farm.board.ssh import SshTransport
from farm.board.transport import Transport
from farm.config.inventory import Board


def open_transport(board: Board, *, connect_timeout: float = 10.0, attempts: int = 3) -> Transport:
    """The transport the inventory asks for, not yet opened."""
    if board.transport == "local":
        return LocalTransport(board)
    return SshTransport(board, connect_timeout=connect_timeout, attempts=attempts)
