"""The wheel (and so the container image) carries every Python package of the source tree.

setuptools installs only the packages pyproject.toml lists; a new subpackage left out of the
list works in the editable install the tests use and fails with ModuleNotFoundError in the
image (it happened to ``henvis.stream``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_source_package_is_listed_for_the_wheel():
    setuptools = PYPROJECT["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    package_dirs = setuptools["package-dir"]
    missing = []
    for package, folder in package_dirs.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder)
            if "migrations" in relative.parts:
                continue  # shipped as package data of its service
            name = ".".join([package, *relative.parts])
            if name not in listed:
                missing.append(name)
    assert missing == [], f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
