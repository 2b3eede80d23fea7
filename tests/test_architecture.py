"""The architecture of ARCHITECTURE.md, enforced: import-linter's contracts in pyproject.toml, and no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
# Cycles closed only by an import inside a function (run on first call, not at import): each should go.
# board: the transport factory lives in the base's module; queue: app and execute; the plugin's hooks and html.
KNOWN_DEFERRED_CYCLES = [{"farm.board.local", "farm.board.ssh", "farm.board.transport"},
                         {"farm.queue.app", "farm.queue.execute", "farm.queue.request"},
                         {"farm.pytestplugin.hooks", "farm.pytestplugin.html"},
                         {"farm.build.mixed", "farm.build.sensitivity", "farm.build.variants"},
                         {"farm.build.toolchains.base", "farm.build.toolchains.fp16", "farm.build.toolchains.qnn"}]


@pytest.mark.real  # lint-imports in a process of its own
def test_layers_point_down_and_the_judge_does_no_io():
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 kept, 0 broken" in proc.stdout


def _top_level_lines(module: str) -> set[int]:
    """The lines of the imports a module runs when it is imported (not in a function, not under TYPE_CHECKING)."""
    path = REPO / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    lines: set[int] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                lines.add(node.lineno)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for part in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    visit(part)
    visit(ast.parse(path.read_text()).body)
    return lines


def cycles(graph: grimp.ImportGraph, at_import_only: bool) -> list[set[str]]:
    """The strongly connected sets of modules of more than one (Tarjan), over direct module imports."""
    edges = {}
    for module in graph.modules:
        targets = graph.find_modules_directly_imported_by(module)
        if at_import_only:
            top = _top_level_lines(module)
            targets = {t for t in targets
                       if any(d["line_number"] in top for d in graph.get_import_details(importer=module, imported=t))}
        edges[module] = sorted(targets)
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


def test_no_module_of_farm_imports_itself_back_at_import_time(graph):
    assert cycles(graph, at_import_only=True) == []


def test_the_cycles_through_imports_in_functions_are_only_the_known_ones_being_removed(graph):
    found = cycles(graph, at_import_only=False)
    assert [c for c in found if c not in KNOWN_DEFERRED_CYCLES] == []  # a new one: import at the top, or split
    assert all(c in found for c in KNOWN_DEFERRED_CYCLES), "a known cycle is gone: remove it from the list"


def test_a_cycle_is_found_where_one_module_imports_another_back():
    graph = grimp.ImportGraph()
    for module in ("p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    assert cycles(graph, at_import_only=False) == []
    graph.add_import(importer="p.c", imported="p.a")
    assert cycles(graph, at_import_only=False) == [{"p.a", "p.b", "p.c"}]
