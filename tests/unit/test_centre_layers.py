"""The centre's layers hold: pure domain modules, no import cycles, no imports hidden in functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CENTRE = Path(__file__).resolve().parents[2] / "services" / "centre"
PACKAGE = "henvis.services.centre"
DOMAIN_MODULES = sorted(path.stem for path in CENTRE.glob("domain*.py"))
#: What a domain module must not load, even indirectly: it decides, others do the I/O.
FORBIDDEN = ("sqlalchemy", "kafka", "aiokafka", "fastapi", "starlette", "httpx", "uvicorn")
#: Commands import their heavy parts lazily on purpose (see its docstring), not to hide a cycle.
LAZY_IMPORTS_ALLOWED = {"cli"}


def _tree(module: str) -> ast.Module:
    return ast.parse((CENTRE / f"{module}.py").read_text(encoding="utf-8"))


def _modules() -> list[str]:
    return sorted(path.stem for path in CENTRE.glob("*.py") if path.stem != "__init__")


def _centre_imports(tree: ast.Module) -> set[str]:
    """The sibling modules a module imports (``from henvis.services.centre import x`` or ``.x``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE + "."):
            found.add(node.module.split(".")[3])
    return found & set(_modules())


def test_domain_modules_load_no_database_broker_or_web_library_and_read_no_environment():
    assert {"domain", "domain_inbox", "domain_intake", "domain_outcomes"} <= set(DOMAIN_MODULES)
    imports = "; ".join(f"import {PACKAGE}.{module}" for module in DOMAIN_MODULES)
    probe = f"import sys; {imports}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r})))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
    for module in DOMAIN_MODULES:
        source = (CENTRE / f"{module}.py").read_text(encoding="utf-8")
        assert "environ" not in source and "getenv" not in source, module


def test_centre_modules_import_each_other_without_cycles():
    graph = {module: _centre_imports(_tree(module)) for module in _modules()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, f"import cycle: {' -> '.join([*path, module])}"
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_no_module_imports_inside_a_function():
    hidden = []
    for module in set(_modules()) - LAZY_IMPORTS_ALLOWED:
        for node in ast.walk(_tree(module)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [
                    f"{module}.{node.name}"
                    for inner in ast.walk(node)
                    if isinstance(inner, (ast.Import, ast.ImportFrom))
                ]
    assert hidden == []
