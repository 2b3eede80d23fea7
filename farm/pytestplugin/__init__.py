"""pytest plugin: run suites against the boards of an inventory (entry point `farm`, options `--farm-*`).

A thin layer over farm.deploy.job (labgrid's way): options in one group, state
in `config.stash`, hooks in `hooks`, fixtures in `fixtures`. It stays inert in
a pytest session that does not use farm: it touches only tests whose fixture
closure includes `farm_run`, and imports farm's heavy parts only when one runs.
"""

# pytest finds fixtures and hooks as attributes
from farm.pytestplugin.fixtures import (  # noqa: F401
    board,
    board_connection,
    board_outcome,
    board_result,
    farm_run,
    verdict,
)
from farm.pytestplugin.hooks import (  # noqa: F401
    pytest_addoption,
    pytest_configure,
    pytest_generate_tests,
    pytest_runtest_makereport,
    pytest_sessionfinish,
)
