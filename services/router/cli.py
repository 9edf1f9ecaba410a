"""``henvis router <command>``: ``worker`` runs the router; ``keygen`` makes a sealing key pair."""

from __future__ import annotations

import argparse
import sys

import structlog


def run_worker(settings=None) -> int:
    """Run the router in the foreground until SIGTERM/SIGINT; returns the exit code."""
    from henvis.kafka import ensure_changelog_topic, ensure_topics, henvis_topics, partition_count
    from henvis.logging import configure_logging
    from henvis.metrics import serve_metrics
    from henvis.registry import load_registry
    from henvis.services.router.app import RouterLogic, build_router
    from henvis.services.router.settings import RouterSettings
    from henvis.stream import run_worker as run_stream_worker

    settings = settings or RouterSettings()
    configure_logging("router", settings.log_level)
    log = structlog.get_logger("henvis.router")
    registry = load_registry(settings.registry_path)
    # Our topics, our partition counts and retention: never broker auto-created defaults.
    ensure_topics(settings.kafka, henvis_topics(settings.kafka, registry))
    logic = RouterLogic(settings, registry)
    router = build_router(settings, logic)
    # The changelog is partitioned like the input: a partition's state moves with it.
    ensure_changelog_topic(settings.kafka, settings.changelog_topic, partition_count(settings.kafka, router.topic))
    serve_metrics(settings.metrics_port)
    log.info(
        "router_starting",
        group_id=settings.group_id,
        instance_id=settings.instance_id,
        partitions=settings.kafka.partitions,
        sealing="on" if logic.seal.enabled else "off (person block dropped from manual handling)",
    )
    return run_stream_worker(router, "router")


def keygen() -> int:
    from henvis.sealing import generate_keypair

    private, public = generate_keypair()
    print(f"HENVIS_ROUTER_MANUAL_PUBLIC_KEY={public}")
    print(f"# private key for the manual-handling role only (keep it out of the router): {private}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="henvis router", description="Route consent decisions to the right centre.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run the router (configuration from HENVIS_ROUTER_* / HENVIS_KAFKA_*)")
    commands.add_parser("keygen", help="print a key pair for sealing manual-handling payloads")
    args = parser.parse_args(argv)
    if args.command == "worker":
        return run_worker()
    return keygen()


if __name__ == "__main__":
    sys.exit(main())
