"""The plugin's fixtures: the session's run, the board and variant, their results, a connection."""

from __future__ import annotations

import logging

import pytest

from farm.pytestplugin.hooks import session_job
from farm.pytestplugin.state import STATE
from farm.statuses import BoardStatus, CheckStatus
from farm.util import printable

log = logging.getLogger(__name__)


class BoardMessage(Exception):
    """An error whose text quotes a board (pytest prints it on the terminal): its escapes removed."""

    def __init__(self, message: str):
        super().__init__(printable(message))


class BoardUnavailable(BoardMessage):
    """The board could not be measured: its tests are errors, not failures."""


class CheckError(BoardMessage):
    """A checklist item could not be judged (the measurement itself failed)."""


@pytest.fixture(scope="session")
def farm_run(request: pytest.FixtureRequest):
    """Deploy to every selected board once, concurrently, with live progress; then judge. The Job."""
    config = request.config
    state = config.stash[STATE]
    job = session_job(config)
    if not state.ran:
        from farm.ui.console import console, kept_from_pytest  # rich: in farm sessions, not at plugin load
        from farm.ui.progress import BoardProgress

        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled(), console(), kept_from_pytest():
            with BoardProgress(job.board_names) as progress:
                try:
                    job.run(progress.update)
                except KeyboardInterrupt:  # stopped: the tests still report what was collected
                    state.interrupted = True
                    log.warning("stopped: reporting what was collected; boards and variants that never ran are errors")
                finally:
                    state.ran = True
    return job


@pytest.fixture(scope="session")
def board(request: pytest.FixtureRequest, farm_run):
    """The board (farm.config.inventory.Board) a test runs against."""
    name = request.param
    result = farm_run.result.board(name)
    if result is None or name not in farm_run.selection.boards:
        raise BoardUnavailable(f"{name}: not deployed (the run stopped before this board)")
    return farm_run.selection.boards[name]


@pytest.fixture
def board_outcome(board, farm_run):
    """The board's result (farm.results.BoardResult): status, facts, every variant."""
    result = farm_run.result.board(board.name)
    if not any(v.status == BoardStatus.OK for v in result.variants.values()):
        raise BoardUnavailable(f"{board.name} is {result.status}: {result.error}")
    return result


@pytest.fixture
def board_result(board_outcome, variant: str):
    """That board x variant's figures (farm.results.VariantResult): latency_ms, samples_ms, peak_rss_mb..."""
    found = board_outcome.variants.get(variant)
    if found is None:
        why = ("not built" if board_outcome.ok
               else f"not measured: the board is {board_outcome.status}: {board_outcome.error}")
        raise BoardUnavailable(f"{board_outcome.name}: variant {variant} {why}")
    if found.status != BoardStatus.OK:
        raise BoardUnavailable(f"{board_outcome.name}: variant {variant} is {found.status}: {found.error}")
    return found


@pytest.fixture
def verdict(request: pytest.FixtureRequest, board_outcome, board_result, variant: str, farm_run):
    """The checklist verdict named by the test's `farm_item` marker; errors and skips raised here."""
    marker = request.node.get_closest_marker("farm_item")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the verdict fixture needs @pytest.mark.farm_item('<item>')")
    item = marker.args[0]
    found = board_result.check(item)
    if found is None:
        pytest.skip(f"the checklist {farm_run.checklist.name!r} has no item {item!r}")
    if found.status == CheckStatus.SKIP:
        pytest.skip(printable(found.why))
    if found.status == CheckStatus.ERROR:
        raise CheckError(found.message(board_outcome.name, variant))
    return found


@pytest.fixture
def board_connection(board_outcome, farm_run):
    """An open connection (SSH, or local) to the board, for tests that run their own commands there."""
    from farm.board.connect import open_transport  # paramiko, fabric: not at plugin load

    with open_transport(farm_run.selection.boards[board_outcome.name]) as connection:
        yield connection
