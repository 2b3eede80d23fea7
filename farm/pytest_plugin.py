"""pytest plugin: run suites against the boards of an inventory.

A thin layer over farm.job (labgrid's way): `--farm-*` options in one group,
state in `config.stash`, and fixtures. The session deploys to every selected
board once and concurrently, the first time a test needs it; tests then judge
what came back. A board that could not be measured turns its tests into
errors (not failures), with the board's reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from farm import report as farm_report
from farm.checklist import Verdict
from farm.errors import FarmError
from farm import options
from farm.job import Job, JobSettings
from farm.progress import BoardProgress
from farm.transport import BoardConnection


class BoardUnavailable(Exception):
    """The board could not be measured: its tests are errors, not failures."""


class CheckError(Exception):
    """A checklist item could not be judged (the measurement itself failed)."""


@dataclass
class FarmState:
    settings: JobSettings
    job: Job | None = None
    ran: bool = False
    results: dict | None = None


STATE = pytest.StashKey[FarmState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("farm", "farm: edge-AI device test farm")
    options.add_to_pytest(group)
    group.addoption("--farm-run-id", default=None, help="run id (default: UTC time + random)")


def _settings(config: pytest.Config) -> JobSettings:
    return options.job_settings(lambda name: config.getoption(f"farm_{name}"), config.getoption("farm_run_id"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[STATE] = FarmState(_settings(config))
    config.addinivalue_line("markers", "farm_item(name): the checklist item a deployment test judges")


def _job(config: pytest.Config) -> Job:
    """The session's job, created (and its configuration validated) on first use."""
    state = config.stash[STATE]
    if state.job is None:
        try:
            state.job = Job(state.settings, say=lambda m: None)
        except FarmError as exc:
            raise pytest.UsageError(f"farm: {exc}") from exc
    return state.job


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize by board x variant: ids like `a72-sim-int8_static`."""
    if "board" not in metafunc.fixturenames:
        return
    job = _job(metafunc.config)
    pairs = [(name, variant) for name in job.board_names for variant in job.settings.variants]
    if "variant" in metafunc.fixturenames:
        metafunc.parametrize(["board", "variant"], pairs, ids=[f"{b}-{v}" for b, v in pairs],
                             indirect=["board"], scope="session")
    else:
        metafunc.parametrize("board", job.board_names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def farm_run(request: pytest.FixtureRequest) -> Job:
    """Deploy to every selected board once, concurrently, with live progress; then judge."""
    config = request.config
    state = config.stash[STATE]
    job = _job(config)
    if not state.ran:
        state.ran = True
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            progress = BoardProgress(job.board_names)
            job.say = lambda message: progress.console.print(f"farm: {message}", highlight=False)
            with progress:
                job.run(progress.update)
        state.results = job.results()
    return job


@pytest.fixture(scope="session")
def board(request: pytest.FixtureRequest, farm_run: Job):
    """The board (farm.inventory.Board) a test runs against."""
    name = request.param
    outcome = farm_run.outcomes.get(name)
    if outcome is None:
        raise BoardUnavailable(f"{name}: not deployed (the run stopped before this board)")
    return outcome.board


@pytest.fixture
def board_outcome(board, farm_run: Job):
    outcome = farm_run.outcomes[board.name]
    if outcome.status != "ok":
        raise BoardUnavailable(f"{board.name} is {outcome.status}: {outcome.error}")
    return outcome


@pytest.fixture
def board_result(board_outcome, variant: str) -> dict:
    """That board x variant's agent JSON document."""
    doc = board_outcome.variants.get(variant)
    if doc is None:
        raise BoardUnavailable(f"{board_outcome.board.name}: variant {variant} was not built or not measured")
    return doc


@pytest.fixture
def verdict(request: pytest.FixtureRequest, board_outcome, board_result, variant: str, farm_run: Job) -> Verdict:
    """The checklist verdict named by the test's `farm_item` marker; errors and skips raised here."""
    marker = request.node.get_closest_marker("farm_item")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the verdict fixture needs @pytest.mark.farm_item('<item>')")
    item = marker.args[0]
    checks = {v.item: v for v in farm_run.verdicts[board_outcome.board.name][variant]}
    if item not in checks:
        pytest.skip(f"the checklist {farm_run.checklist.name!r} has no item {item!r}")
    found = checks[item]
    if found.status == "skip":
        pytest.skip(found.why)
    if found.status == "error":
        raise CheckError(found.message(board_outcome.board.name, variant))
    return found


@pytest.fixture
def board_connection(board_outcome):
    """An open SSH connection to the board, for tests that run their own commands there."""
    with BoardConnection(board_outcome.board) as connection:
        yield connection


# -- reporting ---------------------------------------------------------------------------------
def _row_properties(item: pytest.Item) -> dict | None:
    state = item.config.stash[STATE]
    callspec = getattr(item, "callspec", None)
    if state.results is None or callspec is None or "board" not in callspec.params:
        return None
    board = next((b for b in state.results["boards"] if b["name"] == callspec.params["board"]), None)
    variant = callspec.params.get("variant")
    if board is None or variant is None:
        return None
    marker = item.get_closest_marker("farm_item")
    checks = {c["item"]: c for c in board.get("variants", {}).get(variant, {}).get("checks", [])}
    return farm_report.row_properties(board, variant, checks.get(marker.args[0]) if marker else None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Board figures on every row: in the HTML table and as JUnit properties."""
    rep = yield
    if rep.when == "setup":
        props = _row_properties(item)
        if props:
            item.user_properties.extend(props.items())  # copied into the call and teardown reports
            rep.user_properties.extend(props.items())
    return rep


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_header(cells: list) -> None:
    cells[2:2] = farm_report.header_cells()


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_row(report, cells: list) -> None:
    cells[2:2] = farm_report.row_cells(dict(getattr(report, "user_properties", ())))


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list, summary: list, postfix: list, session: pytest.Session) -> None:
    state = session.config.stash[STATE]
    if state.results:
        prefix.extend(farm_report.summary_sections(state.results, [farm_report.trend_plot(state.job.trends())]))


@pytest.hookimpl(optionalhook=True)
def pytest_html_report_title(report) -> None:
    report.title = "farm: deployment checklist"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stand-ins are stopped and results.json written by the job; keep the final copy here."""
    state = session.config.stash.get(STATE, None)
    if state and state.job and state.ran:
        state.results = state.job.results()
