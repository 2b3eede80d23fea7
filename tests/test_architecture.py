"""The architecture of ARCHITECTURE.md, enforced: import-linter's contracts in pyproject.toml, and no import cycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.real  # lint-imports in a process of its own
def test_layers_point_down_and_the_judge_does_no_io():
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 kept, 0 broken" in proc.stdout


# What `farm` and the pytest plugin (loaded by every pytest session) leave to the command or fixture that needs it.
HEAVY = ("numpy", "onnxruntime", "onnx", "paramiko", "fabric", "yaml", "psycopg", "procrastinate", "starlette", "rich",
         "matplotlib")


@pytest.mark.real  # a fresh interpreter
@pytest.mark.parametrize("module", ["farm.ui.cli", "farm.pytestplugin"])
def test_the_cli_and_the_plugin_load_no_heavy_dependency_until_a_command_or_a_fixture_runs(module):
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.split() == []  # one loaded: import it inside the function that uses it, and say why there


def cycles(graph: grimp.ImportGraph) -> list[set[str]]:
    """The strongly connected sets of modules of more than one (Tarjan), over direct module imports: those at
    the top, those inside functions and those under TYPE_CHECKING alike."""
    edges = {module: sorted(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges[module]:
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(group)
    for module in sorted(edges):
        if module not in index:
            connect(module)
    return found


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("farm", cache_dir=None)


def test_no_module_of_farm_imports_itself_back_not_even_through_an_import_inside_a_function(graph):
    assert cycles(graph) == []  # one found: move what both need into a module both import (ARCHITECTURE.md)


def test_a_cycle_is_found_where_one_module_imports_another_back():
    graph = grimp.ImportGraph()
    for module in ("p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    assert cycles(graph) == []
    graph.add_import(importer="p.c", imported="p.a")
    assert cycles(graph) == [{"p.a", "p.b", "p.c"}]


def test_an_import_inside_a_function_closes_a_cycle_too(tmp_path, monkeypatch):
    package = tmp_path / "deferredpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import deferredpkg.b\n")
    (package / "b.py").write_text("def later():\n    from deferredpkg import a\n\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cycles(grimp.build_graph("deferredpkg", cache_dir=None)) == [{"deferredpkg.a", "deferredpkg.b"}]
