"""The live progress table: a board's words are shown as text."""

from __future__ import annotations

import io

from rich.console import Console

from farm.ui.progress import BoardProgress


def test_a_phase_with_markup_and_escapes_renders_as_plain_text_in_the_live_table_and_the_log():
    log = io.StringIO()
    progress = BoardProgress(["b1"], stream=log)
    progress.update("b1", "agent said [/] [red]x[/red] \x1b]0;pwned\x07\x1b[2Jdone")
    screen = Console(file=io.StringIO(), force_terminal=True, width=200, color_system=None)
    screen.print(progress._table())  # what the live table draws on a terminal
    drawn = screen.file.getvalue()
    assert "agent said [/] [red]x[/red] done" in drawn and "pwned" not in drawn and "\x1b]" not in drawn
    assert log.getvalue().rstrip().endswith("b1: agent said [/] [red]x[/red] done")
