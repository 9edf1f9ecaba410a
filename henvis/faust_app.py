"""The one way henvis builds and runs a faust app (router and stats workers).

Two of faust's sharp edges are handled here, once, for every app:

* **Skip-and-ack on rebalance.**  ``Stream.__aiter__`` skips a message that was fetched
  before a rebalance (stale generation, or flow stopped), but its ``finally`` block still
  acks it, so the consumer may commit past input the agent never saw.  A later seek to that
  committed offset then loses it for good; we saw 7 of 10,000 decisions vanish this way
  after SIGKILL restarts.  A message the stream delivered to an agent is marked
  ``tracked``; :class:`HenvisApp`'s consumer refuses to ack one that is not.  The refused
  message is fetched again from the committed offset after the rebalance (faust seeks
  back), so it is processed instead of lost.
* **Committing past an unhandled head message.**  ``Consumer._new_offset`` returns "nothing
  to commit" only when the lowest acked offset is *more than one* past the committed offset,
  but the committed offset is already the next one to read: with committed = 31 and acked =
  32, 33 … it commits 34 and skips 31 (and it ignores a committed offset of 0 as if none).
  :class:`HenvisApp`'s consumer never commits while the next offset to commit is not acked.
* **Idempotent producing.**  faust enables producer idempotence only in ``exactly_once``
  mode; :class:`IdempotentProducer` turns it on for ``at_least_once`` with ``acks=all``.
"""

from __future__ import annotations

from collections import defaultdict
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


class _CommitGuard:
    """Wraps a faust consumer so it acks only handled messages and never commits past one
    it has not handled (see the module docstring)."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.ack = consumer.ack
        self.new_offset = consumer._new_offset
        # Offsets the stream skipped, per partition, until they are read again and handled.
        self.unhandled: dict = defaultdict(set)
        consumer.ack = self.acknowledge
        consumer._new_offset = self.offset_to_commit

    def acknowledge(self, message) -> bool:
        # ``tracked`` is set when the stream hands the message to an agent; a message it
        # skipped during a rebalance is not, and must be read again rather than committed.
        if not message.tracked:
            self.unhandled[message.tp].add(message.offset)
            return False
        self.unhandled[message.tp].discard(message.offset)
        return self.ack(message)

    def offset_to_commit(self, tp) -> int | None:
        acked = self.consumer._acked[tp]
        if not acked:
            return None
        committed = self.consumer._committed_offset[tp]
        lowest_acked = min(acked)
        skipped = {offset for offset in self.unhandled[tp] if committed is None or offset >= committed}
        self.unhandled[tp] = skipped
        if skipped and min(skipped) < lowest_acked:
            return None  # the head of the partition was skipped and has not been handled yet
        if committed is not None and lowest_acked > committed and not self.consumer._gap[tp]:
            return None  # offset ``committed`` itself is still being handled
        return self.new_offset(tp)


class HenvisApp(faust.App):
    """faust.App with the consumer and producer fixes described in this module."""

    def _new_consumer(self):
        consumer = super()._new_consumer()
        _CommitGuard(consumer)
        return consumer

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
