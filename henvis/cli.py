"""The ``henvis`` command: one entry point whose subcommands start each part.

Each part owns its own argument parsing in a ``main(argv) -> int`` function; this module
only dispatches, importing a part when it is asked for so ``henvis --help`` stays fast.
Commands of other installed packages (the development tooling's ``demo`` and ``broker``)
come from the ``henvis.commands`` entry points, so the runtime never imports them itself.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points

#: subcommand -> (module with ``main(argv)``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "topics": ("henvis.topics", "create the pipeline's Kafka topics"),
    "token": ("henvis.auth", "make an API credential for a client and role"),
    "schemas": ("henvis.contract", "export the event contract (JSON Schema, AsyncAPI)"),
    "consent": ("henvis.services.consent.cli", "police-facing consent API, outbox relay, batch submit"),
    "router": ("henvis.services.router.cli", "route consent decisions to the right centre"),
    "centre": ("henvis.services.centre.cli", "centre inbox worker, caseworker web app, users"),
    "stats": ("henvis.services.stats.cli", "statistics worker and researcher API"),
}


def commands() -> dict[str, tuple[str, str]]:
    """Every command: the runtime's own, then those other packages register."""
    found = dict(COMMANDS)
    for entry in entry_points(group="henvis.commands"):
        found.setdefault(entry.name, (entry.value, _first_line(entry.value)))
    return found


def _first_line(module_name: str) -> str:
    """A registered command's one-line help: its module's ``HELP``."""
    return getattr(importlib.import_module(module_name), "HELP", "")


def _usage(available: dict[str, tuple[str, str]]) -> str:
    width = max(len(name) for name in available)
    lines = ["usage: henvis <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in available.items()]
    lines += ["", "Run `henvis <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    available = commands()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(available))
        return 0
    if argv[0] not in available:
        print(f"henvis: unknown command {argv[0]!r}\n\n{_usage(available)}", file=sys.stderr)
        return 2
    module_name, _ = available[argv[0]]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"henvis: the {argv[0]!r} command is not available in this build", file=sys.stderr)
            return 2
        raise
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
