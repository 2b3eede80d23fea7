"""The one exception hierarchy of farm.

Every message says what went wrong, where, and what to do about it, so that the
CLI can print it as one line and exit 2 without a traceback.
"""

from __future__ import annotations


class FarmError(Exception):
    """Base of every error farm raises on purpose."""


class ConfigError(FarmError):
    """Bad usage or configuration: the CLI exits 2."""


class InventoryError(ConfigError):
    """An inventory file is missing, unparsable or has a bad field."""

    def __init__(self, path: str, line: int | None, message: str, *,
                 board: str | None = None, field: str | None = None, hint: str | None = None):
        self.path, self.line, self.board, self.field, self.hint = path, line, board, field, hint
        where = f"{path}:{line}" if line else str(path)
        parts = [where]
        if board:
            parts.append(f"board {board!r}")
        if field:
            parts.append(f"field {field!r}")
        text = ": ".join([", ".join(parts), message])
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class ChecklistError(ConfigError):
    """A checklist file is missing or malformed."""


class ModelError(ConfigError):
    """A model or data file is unusable: names the file and the reason."""


class TransportError(FarmError):
    """SSH to a board failed; `status` is the board status it maps to."""

    def __init__(self, message: str, status: str = "unreachable"):
        super().__init__(message)
        self.status = status


class AgentError(FarmError):
    """The agent could not report: carries the tail of its stderr."""


class HistoryError(FarmError):
    """The results history store cannot be read or written."""


class SignoffError(FarmError):
    """A sign-off was refused or a sign-off record does not verify."""
