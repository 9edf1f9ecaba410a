"""No module of henvis reads or overrides an underscore-prefixed attribute of a library.

The router and the stats worker once rested on overrides of faust's private methods, written
against one faust release; an upgrade could break delivery without a test noticing.  This
test reads every module of the product and fails on:

* an attribute ``._name`` read from anything but ``self``, ``cls`` or ``super()`` (a
  library object's internals: ``consumer._client``, ``producer._txn_manager`` ...);
* an import from a private module (``from aiokafka.producer._x import ...``);
* a subclass of a class from faust, mode, aiokafka or kafka-python that defines a method
  whose name starts with ``_`` (an override of a library internal).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [path for folder in ("henvis", "services", "schemas") for path in sorted((ROOT / folder).rglob("*.py"))]
LIBRARIES = ("faust", "mode", "aiokafka", "kafka")
# Documented functions of the standard library whose names happen to start with "_".
ALLOWED = {("os", "_exit")}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _library_names(tree: ast.Module) -> set[str]:
    """Names a module binds to things imported from the libraries."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if alias.name.split(".")[0] in LIBRARIES
            )
    return names


def _root(expression: ast.expr) -> str:
    """``faust`` for ``faust.App``, ``Consumer`` for ``Consumer``."""
    while isinstance(expression, ast.Attribute):
        expression = expression.value
    return expression.id if isinstance(expression, ast.Name) else ""


def violations(source: str) -> list[str]:
    tree = ast.parse(source)
    library_names = _library_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and (base.id in ("self", "cls") or (base.id, node.attr) in ALLOWED):
                continue
            if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                continue
            found.append(f"line {node.lineno}: reads .{node.attr}")
        elif (
            isinstance(node, ast.ImportFrom) and node.module and any(_private(part) for part in node.module.split("."))
        ):
            found.append(f"line {node.lineno}: imports the private module {node.module}")
        elif isinstance(node, ast.ClassDef) and {_root(base) for base in node.bases} & library_names:
            found.extend(
                f"line {item.lineno}: {node.name} overrides {item.name} of a library class"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(item.name)
            )
    return found


@pytest.mark.parametrize("path", PRODUCT, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_touches_a_librarys_internals(path):
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "def f(consumer):\n    return consumer._client\n",
        "class W:\n    def f(self):\n        return self.producer._txn_manager\n",
        "from aiokafka.producer._sender import Sender\n",
        "import faust\nclass C(faust.App):\n    def _new_producer(self):\n        pass\n",
        "from faust.transport.drivers.aiokafka import Consumer\nclass P(Consumer):\n    def _new_offset(self, tp):\n        pass\n",
    ],
)
def test_the_check_catches_each_kind_of_trespass(source):
    assert violations(source)
