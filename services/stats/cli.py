"""``henvis stats <command>``: ``worker`` (facts + outcomes -> SQL), ``serve`` (researcher API
and page), ``migrate`` (bring the database to the current schema, for Helm's Job)."""

from __future__ import annotations

import argparse
import sys

import structlog


def run_worker(settings=None) -> int:
    """Run the stats worker in the foreground until SIGTERM/SIGINT; returns the exit code."""
    from henvis.db import make_engine, migrate
    from henvis.kafka import ensure_topics, henvis_topics
    from henvis.logging import configure_logging
    from henvis.metrics import serve_metrics
    from henvis.registry import load_registry
    from henvis.services.stats.app import StatsWorker
    from henvis.services.stats.settings import StatsSettings
    from henvis.services.stats.store import StatsStore
    from henvis.stream import run_worker as run_stream_worker

    settings = settings or StatsSettings()
    configure_logging("stats", settings.log_level)
    log = structlog.get_logger("henvis.stats")
    registry = load_registry(settings.registry_path)
    migrate(settings.database_url, "stats")
    # Our topics, our partition counts and retention: never broker auto-created defaults.
    ensure_topics(settings.kafka, henvis_topics(settings.kafka, registry))
    serve_metrics(settings.metrics_port)
    worker = StatsWorker(settings, registry, StatsStore(make_engine(settings.database_url)))
    log.info("stats_worker_starting", group_id=settings.group_id, instance_id=settings.instance_id)
    return run_stream_worker(worker, "stats_worker")


def serve(host: str, port: int) -> int:
    from henvis.http import serve
    from henvis.logging import configure_logging
    from henvis.services.stats.api import create_stats_app
    from henvis.services.stats.settings import StatsSettings

    settings = StatsSettings()
    configure_logging("stats", settings.log_level)
    return serve(create_stats_app(settings), host, port)


def migrate_only() -> int:
    from henvis.db import migrate
    from henvis.logging import configure_logging
    from henvis.services.stats.settings import StatsSettings

    settings = StatsSettings()
    configure_logging("stats", settings.log_level)
    migrate(settings.database_url, "stats")
    structlog.get_logger("henvis.stats").info("migrated")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="henvis stats", description="Statistics for researchers: worker and API.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="consume facts and outcomes into SQL (HENVIS_STATS_* / HENVIS_KAFKA_*)")
    serve_parser = commands.add_parser("serve", help="researcher API and page")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8003)
    commands.add_parser("migrate", help="migrate the statistics database and exit")
    args = parser.parse_args(argv)
    if args.command == "worker":
        return run_worker()
    if args.command == "serve":
        return serve(args.host, args.port)
    return migrate_only()


if __name__ == "__main__":
    sys.exit(main())
