"""Shared fixtures for farm's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["pytester"]


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
