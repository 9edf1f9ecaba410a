"""``henvis schemas export [DIR] [--check]``: write the contract documents, or check them.

The documents come from :mod:`henvis.schemas.export`, with this build's centre registry
and version; ``--check`` fails when the checked-in files differ, so the contract can never
drift from the models (``make test`` runs it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from henvis import __version__
from henvis.registry import load_registry
from henvis.schemas.export import render


def contract_files() -> dict[Path, str]:
    """Every generated file of this build, by its path under the output folder."""
    return render(load_registry().slugs, __version__)


def export(directory: Path) -> list[Path]:
    written = []
    for relative, text in contract_files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path, expected: dict[Path, str] | None = None) -> list[str]:
    """Generated files that are missing, different, or no longer generated."""
    expected = contract_files() if expected is None else expected
    problems = [
        str(relative)
        for relative, text in expected.items()
        if not (directory / relative).is_file() or (directory / relative).read_text(encoding="utf-8") != text
    ]
    present = {path.relative_to(directory) for path in directory.rglob("*") if path.is_file()}
    problems += [f"{relative} (no longer generated)" for relative in sorted(present - set(expected))]
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="henvis schemas", description="Export the event contract.")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("export", help="write JSON Schemas and the AsyncAPI document")
    command.add_argument("directory", type=Path, nargs="?", default=Path("schemas/generated"))
    command.add_argument("--check", action="store_true", help="fail if the files in DIRECTORY are stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files(args.directory)
        if problems:
            print("Generated contract files are stale; run `henvis schemas export`:\n  " + "\n  ".join(problems))
            return 1
        print(f"Generated contract files in {args.directory} are current.")
        return 0
    for path in export(args.directory):
        print(f"wrote {path}")
    return 0
