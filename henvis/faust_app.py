"""The one way henvis builds and runs a faust app (router and stats workers).

Known faust sharp edges, and where they are handled, are in docs/delivery-guarantees.md;
this module handles one of them:

* **Idempotent producing.**  faust enables producer idempotence only in ``exactly_once``
  mode; :class:`IdempotentProducer` turns it on for ``at_least_once`` with ``acks=all``.
"""

from __future__ import annotations

from pathlib import Path

import faust
import structlog
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer

from henvis.kafka import faust_broker_options
from henvis.settings import KafkaSettings


class IdempotentProducer(AIOKafkaProducer):
    """faust's aiokafka producer with idempotence on: a retried batch is written once."""

    def _settings_extra(self):
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class HenvisApp(faust.App):
    """faust.App with an idempotent producer (see the module docstring)."""

    def _new_producer(self):
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)


def app_options(kafka: KafkaSettings, data_dir: Path, session_timeout_seconds: float | None = None) -> dict:
    """Settings every henvis faust app shares (docs/architecture.md, faust rules)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    options = {
        **faust_broker_options(kafka),
        "processing_guarantee": "at_least_once",
        "web_enabled": False,  # replicas on one host must not fight over a port
        "datadir": str(data_dir / "{conf.name}-data"),
        "store": "memory://",
        "topic_partitions": kafka.partitions,
        "topic_replication_factor": kafka.replication_factor,
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    if session_timeout_seconds:
        options["broker_session_timeout"] = session_timeout_seconds
        options["broker_heartbeat_interval"] = min(3.0, session_timeout_seconds / 3)
    return options


def run_worker(app: faust.App, log_level: str, name: str) -> int:
    """Run ``app`` in the foreground until SIGTERM/SIGINT; returns the exit code."""
    log = structlog.get_logger(f"henvis.{name}")
    worker = faust.Worker(
        app,
        loglevel=log_level.upper(),
        # configure_logging owns the handlers (JSON + redaction); faust must not replace them.
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        log.info(f"{name}_stopped", exit_code=code)
        return code
    return 0
