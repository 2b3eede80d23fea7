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
