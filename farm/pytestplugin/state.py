"""The session's farm state, kept in `config.stash`: read by the hooks, the fixtures and the HTML additions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported when a farm fixture runs, never at plugin load
    from farm.deploy.job import Job


@dataclass
class FarmState:
    job: Job | None = None
    ran: bool = False
    interrupted: bool = False  # the run was stopped: tests report what was collected, the session ends stopped


STATE = pytest.StashKey[FarmState]()
