"""Shared fixtures for farm's own tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import closed_port

# Started in the background by a non-interactive shell (`cmd &`, nohup), pytest inherits SIGINT ignored,
# and so would every `farm` it starts: the Ctrl-C tests would test the shell, not farm (seen: a full run
# launched that way failed them, the same tests passed in the foreground). A handler here is reset to the
# default in each child at exec, so each `farm` takes Ctrl-C as a user's terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["pytester"]

# Fixtures that start real parts: stand-in boards (sshd), PostgreSQL, a browser, a pytest child process, or
# real quantization of a demo model (tens of seconds). A test that needs one, directly or through another
# fixture, is marked `real`; so is, explicitly, a test that starts a process without one. `./scripts/test.sh
# --quick` runs the others (`-m "not slow and not real"`); the full run runs all.
REAL_FIXTURES = frozenset({"shared_dir", "lab", "postgres_server", "browser", "pytester", "variants", "built"})


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if REAL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)


@pytest.fixture(autouse=True)
def _quick_tests_start_no_process(request, monkeypatch):
    """A test the quick tier runs must not start a process: one that does is told to mark itself `real`."""
    if request.node.get_closest_marker("real") or request.node.get_closest_marker("slow"):
        return

    def refuse(self, args=None, *rest, **kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a process ({args or kwargs.get('args')!r}): "
                             "mark it @pytest.mark.real (tests/conftest.py), or fake the process")
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def digits_model() -> Path:
    return REPO / "models" / "digits" / "digits.onnx"


@pytest.fixture(scope="session")
def digits_data() -> Path:
    return REPO / "models" / "digits" / "digits.npz"


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A folder the stand-ins' unprivileged login user can read (pytest's tmp is 0700)."""
    import os
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="farm-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def lab(shared_dir):
    """Three real sshd stand-ins on 127.0.0.1, up for the whole test session."""
    from farm.config.inventory import StandinSpec
    from farm.lab.standins import Lab

    lab = Lab(shared_dir / "lab")
    boards, _ = lab.up([StandinSpec("t1", cores=1), StandinSpec("t2", cores=1), StandinSpec("t3", cores=2)])
    yield lab, {b.name: b for b in boards}
    lab.down()


@pytest.fixture(scope="session")
def variants(tmp_path_factory, digits_model, digits_data):
    """The digits variants, built once: (cache folder, manifest)."""
    from farm.build.variants import build

    out = tmp_path_factory.mktemp("variants")
    return out, build(digits_model, digits_data, out, host_figures=False)


@pytest.fixture(scope="session")
def plan(variants):
    from farm.config.settings import Measurement
    from farm.deploy.session import DeployPlan

    out, manifest = variants
    return DeployPlan.from_manifest(manifest, out, "test-run", Measurement(warmup=2, runs=20), variant_deadline_s=60,
                                    connect_attempts=2)


def _as_postgres(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1 for this session; call it with a name for a fresh database's URL."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL server binaries (scripts/setup.sh installs them) and root, to run them as "
                    "the postgres user")
    bin_dir = found[-1].parent
    data = Path(tempfile.mkdtemp(prefix="farm-pg-", dir="/tmp"))
    shutil.chown(data, "postgres", "postgres")
    port = closed_port()
    init = _as_postgres(str(bin_dir / "initdb"), "-D", str(data / "db"), "--auth=trust", "-U", "postgres")
    assert init.returncode == 0, init.stderr
    start = _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"), "start",
                         "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c max_connections=200")
    assert start.returncode == 0, start.stderr + (data / "log").read_text()

    def database(name: str) -> str:
        created = _as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), name)
        assert created.returncode == 0, created.stderr
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"

    try:
        yield database
    finally:
        _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop")
        shutil.rmtree(data, ignore_errors=True)
