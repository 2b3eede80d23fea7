"""farm's additions to pytest-html, registered only in sessions that use farm."""

from __future__ import annotations

import pytest

from farm.pytestplugin.state import STATE


class FarmHtml:
    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_html_report_title(self, report) -> None:
        report.title = "farm: deployment checklist"

    def pytest_html_results_table_header(self, cells: list) -> None:
        from farm.ui.report import header_cells  # numpy, PyYAML: not at plugin load

        cells[2:2] = header_cells()

    def pytest_html_results_table_row(self, report, cells: list) -> None:
        from farm.ui.report import row_cells  # numpy, PyYAML: not at plugin load

        cells[2:2] = row_cells(dict(getattr(report, "user_properties", ())))

    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list, session: pytest.Session) -> None:
        """Only reads what the job computed; nothing here can fail on a store or a board."""
        state = session.config.stash.get(STATE, None)
        if state is not None and state.ran:
            from farm.ui.report import summary_sections  # numpy, PyYAML: not at plugin load

            prefix.extend(summary_sections(state.job.result, state.job.trends))
