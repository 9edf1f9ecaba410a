"""``henvis router worker``: runs the router."""

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
    )
    return run_stream_worker(router, "router")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="henvis router", description="Route consent decisions to the right centre.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run the router (configuration from HENVIS_ROUTER_* / HENVIS_KAFKA_*)")
    parser.parse_args(argv)
    return run_worker()


if __name__ == "__main__":
    sys.exit(main())
