"""The plugin's hooks: options, parametrization by board x variant, figures on every report row."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from farm.config import options
from farm.config.project import find_project_config
from farm.errors import FarmError
from farm.pytestplugin.html import FarmHtml
from farm.pytestplugin.state import STATE, FarmState

if TYPE_CHECKING:  # imported when a farm fixture runs, never at plugin load
    from farm.deploy.job import Job

PREPARED = "farm-prepared-job"


class PreparedJob:
    """A Job that `farm run` built (and validated): the session runs it instead of building its own."""

    __name__ = PREPARED  # pluggy registers the object under this name

    def __init__(self, job: Job):
        self.job = job


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("farm", "farm: edge-AI device test farm")
    options.add_to_pytest(group)


def _project(config: pytest.Config):
    try:
        return find_project_config(config.invocation_params.dir)
    except FarmError as exc:
        raise pytest.UsageError(f"farm: {exc}") from exc


def requested(config: pytest.Config) -> bool:
    """Was farm asked for in this session: `farm run`, a --farm-* option, a FARM_* variable, [tool.farm]?"""
    if config.pluginmanager.get_plugin(PREPARED) is not None:
        return True
    if any(config.getoption(f"farm_{o.dest}") is not None for o in options.RUN_OPTIONS):
        return True
    return any(os.environ.get(o.env) for o in options.RUN_OPTIONS) or _project(config) is not None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[STATE] = FarmState()
    config.addinivalue_line("markers", "farm_item(name): the checklist item a deployment test judges")
    if requested(config) and config.pluginmanager.has_plugin("html"):
        config.pluginmanager.register(FarmHtml(config), "farm-html")


def session_job(config: pytest.Config) -> Job:
    """The session's job: the prepared one, else one built (and validated) from the options."""
    state = config.stash[STATE]
    if state.job is None:
        prepared = config.pluginmanager.get_plugin(PREPARED)
        if prepared is not None:
            state.job = prepared.job
        else:
            from farm.deploy.job import Job  # at first use, not at plugin load (in every pytest session)

            try:
                resolved = options.resolve(lambda name: config.getoption(f"farm_{name}"), project=_project(config))
                state.job = Job(options.run_settings(resolved))
            except FarmError as exc:
                raise pytest.UsageError(f"farm: {exc}") from exc
    return state.job


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize farm's tests by board x variant (ids like `a72-sim-int8_static`); leave others alone."""
    if "farm_run" not in metafunc.fixturenames or "board" not in metafunc.fixturenames:
        return  # a foreign `board` fixture (one that does not use farm_run) is not ours
    job = session_job(metafunc.config)
    if "variant" in metafunc.fixturenames:
        pairs = [(name, variant) for name in job.board_names for variant in job.variants_of(name)]
        metafunc.parametrize(["board", "variant"], pairs, ids=[f"{b}-{v}" for b, v in pairs],
                             indirect=["board"], scope="session")
    else:
        metafunc.parametrize("board", job.board_names, indirect=True, scope="session")


def _row_properties(item: pytest.Item) -> dict | None:
    state = item.config.stash.get(STATE, None)
    callspec = getattr(item, "callspec", None)
    if state is None or not state.ran or callspec is None or "variant" not in callspec.params:
        return None
    from farm.ui.report import row_properties  # numpy, PyYAML: in farm sessions, not at plugin load

    board = state.job.result.board(callspec.params["board"])
    if board is None:
        return None
    marker = item.get_closest_marker("farm_item")
    variant = board.variants.get(callspec.params["variant"])
    check = variant.check(marker.args[0]) if variant and marker else None
    return row_properties(board, callspec.params["variant"], check, state.job.result.model.spec.get("outputs", []),
                          marker.args[0] if marker else None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is not None and state.interrupted:
        session.exitstatus = pytest.ExitCode.INTERRUPTED


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Board figures on every farm row: in the HTML table and as JUnit properties."""
    rep = yield
    if rep.when == "setup":
        props = _row_properties(item)
        if props:
            item.user_properties.extend(props.items())  # copied into the call and teardown reports
            rep.user_properties.extend(props.items())
    return rep
