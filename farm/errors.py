"""The one exception hierarchy of farm.

Every message says what went wrong, where, and what to do about it, so that the
CLI can print it as one line and exit 2 without a traceback. A `BoardError`
carries the board status it maps to: one board's fault is that board's status,
never the run's.
"""

from __future__ import annotations

from farm.statuses import BoardStatus


class FarmError(Exception):
    """Base of every error farm raises on purpose."""


class ConfigError(FarmError):
    """Bad usage or configuration: the CLI exits 2."""


class PowerError(FarmError):
    """A board's power could not be switched, or it did not come back after a cycle: says which and why."""


class LocatedError(ConfigError):
    """A bad value in a file: names the file, the line, what holds the value, and the fix."""

    def __init__(self, path: str, line: int | None, message: str, *, where: str | None = None,
                 field: str | None = None, hint: str | None = None):
        self.path, self.line, self.field, self.hint = path, line, field, hint
        parts = [f"{path}:{line}" if line else str(path)]
        if where:
            parts.append(where)
        if field:
            parts.append(f"field {field!r}")
        text = ": ".join([", ".join(parts), message])
        super().__init__(text + (f" ({hint})" if hint else ""))


class InventoryError(LocatedError):
    """An inventory file is missing, unparsable or has a bad field."""

    def __init__(self, path: str, line: int | None, message: str, *, board: str | None = None,
                 field: str | None = None, hint: str | None = None):
        self.board = board
        super().__init__(path, line, message, where=f"board {board!r}" if board else None, field=field, hint=hint)


class ChecklistError(LocatedError):
    """A checklist file is missing or has a bad item or setting."""

    def __init__(self, path: str, line: int | None, message: str, *, item: str | None = None,
                 field: str | None = None, hint: str | None = None):
        super().__init__(path, line, message, where=f"item {item!r}" if item else None, field=field, hint=hint)


class ModelError(ConfigError):
    """A model, data or spec file is unusable: names the file and the reason."""


class BoardError(FarmError):
    """One board could not be measured; `status` is the board status it maps to (a member: never a bare word,
    whose typo would show only when the fault happens)."""

    def __init__(self, message: str, status: BoardStatus = BoardStatus.UNREACHABLE):
        if not isinstance(status, BoardStatus):
            raise TypeError(f"BoardError's status is a BoardStatus member, not {status!r}")
        super().__init__(message)
        self.status = status


class BoardBusy(BoardError):
    def __init__(self, message: str):
        super().__init__(message, BoardStatus.BUSY)


class Stopped(BoardError):
    """The whole run was stopped (Ctrl-C, a signal, its deadline) before this board finished: not the board's fault."""


class Cancelled(Stopped):
    def __init__(self, message: str = "run cancelled"):
        super().__init__(message, BoardStatus.CANCELLED)


class AgentError(BoardError):
    """The agent could not report: carries the tail of its stderr."""

    def __init__(self, message: str):
        super().__init__(message, BoardStatus.AGENT_ERROR)


class HistoryError(FarmError):
    """The results history store cannot be read or written."""


class SignoffError(FarmError):
    """A sign-off was refused or a sign-off record does not verify."""


class QueueError(FarmError):
    """The job queue's store is unreachable, or a job cannot be run as submitted."""
