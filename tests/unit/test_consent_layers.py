"""The consent service's layers: pure domain modules, and no import cycles between modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "services" / "consent"
PACKAGE = "henvis.services.consent"
#: Modules that decide: plain values in, plain values out.
DOMAIN = ["domain", "refusals", "delivery", "batch"]
#: What a domain module may not import: I/O libraries, and ``os`` (no environment reads).
FORBIDDEN = {"sqlalchemy", "kafka", "aiokafka", "fastapi", "starlette", "httpx", "os"}


def _imports(module: str) -> set[str]:
    """Every module ``module`` imports, at the top or inside functions."""
    tree = ast.parse((FOLDER / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _consent_imports(module: str) -> set[str]:
    """The consent modules ``module`` imports, by their short name."""
    prefix = f"{PACKAGE}."
    return {name.removeprefix(prefix).split(".")[0] for name in _imports(module) if name.startswith(prefix)}


def _consent_modules() -> list[str]:
    return sorted(path.stem for path in FOLDER.glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("module", DOMAIN)
def test_domain_modules_import_no_io_library(module: str) -> None:
    roots = {name.split(".")[0] for name in _imports(module)}
    assert roots & FORBIDDEN == set()
    assert "environ" not in (FOLDER / f"{module}.py").read_text(encoding="utf-8")


def test_no_import_cycle_between_the_consent_modules() -> None:
    modules = _consent_modules()
    edges = {module: _consent_imports(module) & set(modules) for module in modules}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        assert module not in visiting, f"import cycle: {' -> '.join([*visiting[visiting.index(module) :], module])}"
        if module in done:
            return
        visiting.append(module)
        for imported in sorted(edges[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in modules:
        visit(module)
