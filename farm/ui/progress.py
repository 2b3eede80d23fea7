"""Live progress of a deployment: one line per board with its phase and elapsed time.

On a terminal it is a rich Live table; elsewhere (CI logs, pipes) one plain line
per change, so a log still tells what each board was doing when. `update` is the
sessions' one callback (farm.deploy.session.Progress); what else farm says is
logged, and rich prints the console's lines above the live table.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from farm.results import BoardStatus
from farm.util import printable

STATUSES = {s.value for s in BoardStatus}
DONE_STYLES: dict[str, str] = {BoardStatus.OK: "green"}


def cell(text: object) -> str:
    """Text from a board for a rich table: its `[/]` is text, not markup (a MarkupError once ended `farm run`
    after its results were written), and its terminal escapes are gone."""
    return escape(printable(text))


class BoardProgress:
    def __init__(self, boards: list[str], stream: TextIO | None = None):
        self.console = Console(file=stream or sys.stderr)
        self.started = time.monotonic()
        self.rows = {name: ["waiting", self.started, None] for name in boards}
        self._lock = threading.Lock()
        self._live: Live | None = None

    def _table(self) -> Table:
        table = Table(title="farm: deploying", title_justify="left", expand=False)
        for column in ("board", "phase", "elapsed"):
            table.add_column(column)
        now = time.monotonic()
        for name, (phase, since, ended) in self.rows.items():
            style = DONE_STYLES.get(phase, "red" if ended else "")
            shown = cell(phase)
            table.add_row(cell(name), f"[{style}]{shown}[/]" if style else shown, f"{(ended or now) - since:5.1f} s")
        return table

    def update(self, board: str, phase: str) -> None:
        with self._lock:
            row = self.rows.setdefault(board, [phase, time.monotonic(), None])
            row[0] = phase
            if phase in STATUSES:
                row[2] = time.monotonic()
            if self._live is not None:
                self._live.update(self._table())
            else:
                self._line(f"[{time.monotonic() - self.started:6.1f} s] {board}: {phase}")

    def _line(self, message: str) -> None:
        """A change as a plain line (no terminal), printed as it is: never markup, never an escape."""
        self.console.print(printable(message), markup=False, highlight=False)

    def __enter__(self) -> BoardProgress:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc_info)
            self._live = None
