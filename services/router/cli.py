"""``henvis router <command>``: ``worker`` runs the faust router; ``keygen`` makes a sealing key pair."""

from __future__ import annotations

import argparse
import sys

import structlog


def run_worker(settings=None) -> int:
    """Run the router in the foreground until SIGTERM/SIGINT; returns the exit code."""
    from henvis.faust_app import run_worker as run_faust_worker
    from henvis.kafka import ensure_topics, henvis_topics
    from henvis.logging import configure_logging
    from henvis.metrics import serve_metrics
    from henvis.registry import load_registry
    from henvis.services.router.app import Router
    from henvis.services.router.settings import RouterSettings

    settings = settings or RouterSettings()
    configure_logging("router", settings.log_level)
    log = structlog.get_logger("henvis.router")
    registry = load_registry(settings.registry_path)
    # Our topics, our partition counts and retention: never broker auto-created defaults.
    ensure_topics(settings.kafka, henvis_topics(settings.kafka, registry))
    serve_metrics(settings.metrics_port)
    router = Router(settings, registry)
    log.info(
        "router_starting",
        app_id=settings.faust_app_id,
        partitions=settings.kafka.partitions,
        sealing="on" if router.seal.enabled else "off (person block dropped from manual handling)",
    )
    return run_faust_worker(router.app, settings.log_level, "router")


def keygen() -> int:
    from henvis.services.router.sealing import generate_keypair

    private, public = generate_keypair()
    print(f"HENVIS_ROUTER_MANUAL_PUBLIC_KEY={public}")
    print(f"# private key for the manual-handling role only (keep it out of the router): {private}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="henvis router", description="Route consent decisions to the right centre.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run the faust router (configuration from HENVIS_ROUTER_* / HENVIS_KAFKA_*)")
    commands.add_parser("keygen", help="print a key pair for sealing manual-handling payloads")
    args = parser.parse_args(argv)
    if args.command == "worker":
        return run_worker()
    return keygen()


if __name__ == "__main__":
    sys.exit(main())
