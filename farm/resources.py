"""Files farm runs with, wherever farm is installed.

The board agent, the deployment-checklist suite, the checklists, the built-in
stand-in inventory and the default demo model live in the top-level folders
agents/, suites/, inventory/ and models/ of the repository. pyproject.toml maps
them into the package as `farm._agents`, `farm._suites`, `farm._inventory` and
`farm._models`, so importlib.resources finds them in a checkout (editable
install) and in a wheel alike; nothing is located by `__file__/..`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _path(package: str, *parts: str) -> Path:
    return Path(str(files(package).joinpath(*parts)))


def agent() -> Path:
    """The one-file board agent (Python >= 3.8, numpy + onnxruntime)."""
    return _path("farm._agents", "farm_agent.py")


def default_suite() -> Path:
    return _path("farm._suites", "test_deployment_checklist.py")


def checklist(name: str) -> Path:
    """A packaged checklist by name: `dms`, `dms-nightly`."""
    return _path("farm._suites", "checklists", f"{name}.yaml")


def standin_inventory() -> Path:
    """The built-in stand-in boards (three real sshd servers on 127.0.0.1)."""
    return _path("farm._inventory", "local.yaml")


def demo_model() -> Path:
    return _path("farm._models", "digits", "digits.onnx")


def demo_data() -> Path:
    return _path("farm._models", "digits", "digits.npz")
