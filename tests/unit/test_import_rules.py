"""The boundaries of the code, checked on every module (docs/architecture.md, "Boundaries").

* a service never imports another service;
* the contract package (``schemas/``, ``henvis.schemas``) imports nothing else of henvis;
* a domain module (``services/*/domain*.py`` and the consent service's other deciding
  modules) imports no I/O library, reads no environment and uses no adapter of its service,
  not even through the modules it imports: it decides on the values it is given;
* the runtime (``henvis``, ``henvis.services``, ``henvis.schemas``) never imports the
  development tooling (``henvis_dev``: local broker, demo, pilot, load generators);
* there is no import cycle, counting imports inside functions too (they are how a cycle
  hides);
* imports sit at the top of a module, except in the few places named in ``LAZY_IMPORTS``;
* a service's routes are module-level functions, not closures inside a factory.

Each rule is checked on the real tree and, once, on a small made-up tree that breaks it, so
a rule that could never fail would show.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: folder -> the import name it is installed under (pyproject.toml's package-dir)
PACKAGES = {"henvis": "henvis", "services": "henvis.services", "schemas": "henvis.schemas", "devtools": "henvis_dev"}
IO_LIBRARIES = (
    "sqlalchemy",
    "kafka",
    "aiokafka",
    "faust",
    "mode",
    "httpx",
    "fastapi",
    "starlette",
    "uvicorn",
    "psycopg",
    "os",
)
#: Service modules that decide without being called domain*.py.
DECIDING_MODULES = frozenset(f"henvis.services.consent.{name}" for name in ("refusals", "delivery", "batch"))
#: Modules that import inside functions, and why.
LAZY_IMPORTS = {
    "henvis.services.centre.cli": "each subcommand loads only what it runs",
    "henvis.services.consent.cli": "each subcommand loads only what it runs",
    "henvis.services.router.cli": "each subcommand loads only what it runs",
    "henvis.services.stats.cli": "each subcommand loads only what it runs",
    "henvis.db": "alembic's context exists only while alembic runs an env.py",
    "henvis.http": "uvicorn only when a service is served",
    "henvis.kafka": "TLS and admin helpers only for the deployments that use them",
    "henvis.metrics": "fastapi only for the apps that mount /metrics",
}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    imports: frozenset[str]  # every module or package named in an import, at any depth
    reads_environment: bool
    lazy_import_lines: tuple[int, ...]  # imports inside a function
    nested_routes: tuple[str, ...]  # decorated functions defined inside a function


def module_name(folder: str, path: Path, root: Path) -> str:
    parts = list(path.relative_to(root / folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGES[folder], *parts])


def parse(path: Path, name: str) -> Module:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    reads_environment = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            imports.add(base)
            imports.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            reads_environment |= isinstance(node.value, ast.Name) and node.value.id == "os"
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner_nodes = [(function, inner) for function in functions for inner in ast.walk(function) if inner is not function]
    lazy = sorted({inner.lineno for _, inner in inner_nodes if isinstance(inner, (ast.Import, ast.ImportFrom))})
    nested = sorted(
        {
            inner.name
            for _, inner in inner_nodes
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner.decorator_list
        }
    )
    return Module(name, path, frozenset(imports), reads_environment, tuple(lazy), tuple(nested))


def modules(root: Path = ROOT) -> dict[str, Module]:
    found = {}
    for folder in PACKAGES:
        for path in sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else ():
            name = module_name(folder, path, root)
            found[name] = parse(path, name)
    return found


def internal_imports(module: Module, known: dict[str, Module]) -> set[str]:
    """The modules of ours ``module`` imports (``from x import y`` counts as x.y if that is a module)."""
    return {name for name in module.imports if name in known and name != module.name}


def service_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[2] if name.startswith("henvis.services.") and len(parts) > 2 else None


def is_runtime(name: str) -> bool:
    return name == "henvis" or name.startswith("henvis.")


# ---------------------------------------------------------------- the rules


def services_importing_each_other(known: dict[str, Module]) -> list[str]:
    return [
        f"{module.name} imports {target}"
        for module in known.values()
        if (own := service_of(module.name))
        for target in internal_imports(module, known)
        if service_of(target) not in (None, own)
    ]


def schemas_importing_henvis(known: dict[str, Module]) -> list[str]:
    return [
        f"{module.name} imports {target}"
        for module in known.values()
        if module.name.startswith("henvis.schemas")
        for target in module.imports
        if (target == "henvis" or target.startswith("henvis.")) and not target.startswith("henvis.schemas")
    ]


def is_deciding(module: Module) -> bool:
    return bool(service_of(module.name)) and (module.path.name.startswith("domain") or module.name in DECIDING_MODULES)


def reachable(start: str, known: dict[str, Module]) -> list[str]:
    """``start`` and every module of ours it imports, directly or through others."""
    seen, todo = [start], [start]
    while todo:
        for target in sorted(internal_imports(known[todo.pop()], known)):
            if target not in seen:
                seen.append(target)
                todo.append(target)
    return seen


def domains_doing_io(known: dict[str, Module]) -> list[str]:
    problems = []
    for module in known.values():
        if not is_deciding(module):
            continue
        for name in reachable(module.name, known):
            via = "" if name == module.name else f" (through {name})"
            problems += [
                f"{module.name} imports {target}{via}"
                for target in sorted(known[name].imports)
                if target.split(".")[0] in IO_LIBRARIES
            ]
            if known[name].reads_environment:
                problems.append(f"{module.name} reads os.environ{via}")
            if service_of(name) and not is_deciding(known[name]) and known[name].path.name != "__init__.py":
                problems.append(f"{module.name} uses the adapter {name}")
    return problems


def runtime_importing_devtools(known: dict[str, Module]) -> list[str]:
    return [
        f"{module.name} imports {target}"
        for module in known.values()
        if is_runtime(module.name)
        for target in module.imports
        if target.split(".")[0] == "henvis_dev"
    ]


def import_cycles(known: dict[str, Module]) -> list[str]:
    graph = {name: internal_imports(module, known) for name, module in known.items()}
    cycles, done = [], set()

    def visit(name: str, path: list[str]) -> Iterator[list[str]]:
        for target in sorted(graph[name]):
            if target in path:
                yield [*path[path.index(target) :], target]
            elif target not in done:
                yield from visit(target, [*path, target])
        done.add(name)

    for start in sorted(graph):
        if start not in done:
            cycles += [" -> ".join(cycle) for cycle in visit(start, [start])]
    return sorted(set(cycles))


def imports_inside_functions(known: dict[str, Module]) -> list[str]:
    return [
        f"{module.name} imports inside a function at line(s) {', '.join(map(str, module.lazy_import_lines))}"
        for module in known.values()
        if is_runtime(module.name)
        and module.lazy_import_lines
        and module.name not in LAZY_IMPORTS
        and ".migrations." not in module.name  # alembic loads each revision's imports itself
    ]


def routes_inside_functions(known: dict[str, Module]) -> list[str]:
    return [
        f"{module.name} defines {', '.join(module.nested_routes)} inside a function"
        for module in known.values()
        if service_of(module.name) and module.nested_routes
    ]


RULES = [
    services_importing_each_other,
    schemas_importing_henvis,
    domains_doing_io,
    runtime_importing_devtools,
    import_cycles,
    imports_inside_functions,
    routes_inside_functions,
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_the_tree_keeps_the_rule(rule):
    assert rule(modules()) == []


# ---------------------------------------------------------------- each rule can fail

BROKEN_TREE = {
    "services/consent/__init__.py": "",
    "services/consent/api.py": "from henvis.services.centre import store\n",
    "services/consent/domain.py": "import os\nimport sqlalchemy\nURL = os.environ['X']\n",
    "services/consent/refusals.py": "from henvis.services.consent import api\n",
    "services/consent/routes.py": "def routes(app):\n    @app.get('/')\n    def index():\n        pass\n",
    "services/centre/__init__.py": "",
    "services/centre/store.py": "def load():\n    from henvis.services.centre import web\n",
    "services/centre/web.py": "from henvis.services.centre import store\n",
    "schemas/__init__.py": "",
    "schemas/export.py": "from henvis.registry import load_registry\n",
    "henvis/__init__.py": "",
    "henvis/registry.py": "",
    "henvis/cli.py": "import henvis_dev.demo\n",
    "devtools/__init__.py": "",
    "devtools/demo.py": "",
}


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_each_rule_catches_a_tree_that_breaks_it(rule, tmp_path):
    for relative, text in BROKEN_TREE.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text, encoding="utf-8")
    assert rule(modules(tmp_path))
