"""The shape of the stats service: a pure domain, routes outside factories, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STATS = Path(__file__).resolve().parents[2] / "services" / "stats"
PACKAGE = "henvis.services.stats"
DOMAIN_MODULES = ("domain", *(path.stem for path in sorted(STATS.glob("domain_*.py"))))
#: I/O libraries a domain module must not import (settings come in as values, never from os.environ)
IO_LIBRARIES = ("sqlalchemy", "kafka", "aiokafka", "fastapi", "starlette", "httpx", "os")
#: ``henvis stats`` imports lazily so each subcommand loads only what it runs.
LAZY_IMPORTS_ALLOWED = {"cli"}
MODULES = sorted(path.stem for path in STATS.glob("*.py") if path.stem != "__init__")


def _tree(module: str) -> ast.Module:
    return ast.parse((STATS / f"{module}.py").read_text())


def _imported(tree: ast.AST) -> set[str]:
    """Dotted names of everything imported anywhere in ``tree``, ``from a import b`` as ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _stats_modules_imported(tree: ast.AST) -> set[str]:
    """The sibling modules ``tree`` imports (``from henvis.services.stats import x`` or ``.x``)."""
    found = set()
    for name in _imported(tree):
        if name.startswith(PACKAGE + "."):
            module = name.removeprefix(PACKAGE + ".").split(".")[0]
            if module in MODULES:
                found.add(module)
    return found


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_a_domain_module_imports_no_io_library_and_no_adapter(module):
    imported = _imported(_tree(module))
    assert {name for name in imported if name.split(".")[0] in IO_LIBRARIES} == set()
    assert _stats_modules_imported(_tree(module)) <= set(DOMAIN_MODULES)


@pytest.mark.parametrize("module", sorted(set(MODULES) - LAZY_IMPORTS_ALLOWED))
def test_imports_sit_at_the_top_of_the_module(module):
    inner = [
        node.lineno
        for function in ast.walk(_tree(module))
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(function)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert inner == [], f"imports inside functions of {module}.py at lines {inner}"


def test_the_stats_modules_import_each_other_without_a_cycle():
    graph = {module: _stats_modules_imported(_tree(module)) for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module in done:
            return
        for imported in graph[module]:
            visit(imported, (*path, module))
        done.add(module)

    for module in MODULES:
        visit(module, ())


@pytest.mark.parametrize("module", ["api", "api_routes", "page_routes"])
def test_routes_are_module_level_functions_not_closures(module):
    nested = [
        inner.name
        for outer in ast.walk(_tree(module))
        if isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef))
        for inner in ast.walk(outer)
        if inner is not outer and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner.decorator_list
    ]
    assert nested == []
