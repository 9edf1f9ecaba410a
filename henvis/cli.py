"""The ``henvis`` command: one entry point whose subcommands start each part.

Each part owns its own argument parsing in a ``main(argv) -> int`` function; this module
only dispatches, importing a part when it is asked for so ``henvis --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

#: subcommand -> (module with ``main(argv)``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("henvis.demo", "start the broker and every service, replay the pilot, print the figures"),
    "broker": ("henvis.broker", "start, stop or inspect the project's local Kafka broker"),
    "topics": ("henvis.topics", "create the pipeline's Kafka topics"),
    "token": ("henvis.auth", "make an API credential for a client and role"),
    "schemas": ("henvis.contract", "export the event contract (JSON Schema, AsyncAPI)"),
    "consent": ("henvis.services.consent.cli", "police-facing consent API, outbox relay, batch submit"),
    "router": ("henvis.services.router.cli", "route consent decisions to the right centre"),
    "centre": ("henvis.services.centre.cli", "centre inbox worker, caseworker web app, users"),
    "stats": ("henvis.services.stats.cli", "statistics worker and researcher API"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: henvis <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Run `henvis <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"henvis: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, _ = COMMANDS[argv[0]]
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
