"""The faust adapter: consume ``consent.decisions.v1``, apply :mod:`.domain`, publish, remember.

Delivery (see ``docs/delivery-guarantees.md``):

* ``processing_guarantee="at_least_once"`` and ``concurrency=1`` on both agents; the input
  agent iterates ``app.in_order(stream)``: each partition strictly in offset order, and an
  offset is committed only after the agent has finished it (never faust's own ack-based
  offset, which can pass skipped messages; see ``henvis/faust_app.py``).
* Every output is awaited until the broker acknowledged it (``acks=all``, idempotent producer)
  *before* the table is updated and before the loop moves on, so a kill at any moment can
  only cause a re-send of the same deterministic events, never a loss.
* Exceptions never escape an agent (faust would ack the event): a message the domain cannot
  handle goes to manual handling; a publish failure is retried with backoff until it works.
* State (``cases`` table) is keyed by a pseudonym of ``case_ref`` and written to the input
  message's partition, so it moves with the partition when a second worker joins.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import faust
import structlog
from prometheus_client import Counter, Histogram

from henvis.faust_app import HenvisApp, app_options
from henvis.kafka import topic_name
from henvis.metrics import WORKER_READY
from henvis.registry import Registry
from henvis.schemas.events import utcnow
from henvis.schemas.topics import CONSENT_DECISIONS
from henvis.services.router import domain
from henvis.services.router.sealing import Sealer
from henvis.services.router.settings import RouterSettings

log = structlog.get_logger("henvis.router")

REFERRALS = Counter("henvis_router_referrals_total", "Referrals issued to a centre's topic", ["centre"])
MANUAL = Counter("henvis_router_manual_total", "Events sent to manual handling", ["reason"])
DUPLICATES = Counter("henvis_router_duplicates_dropped_total", "Input events dropped as already processed")
PUBLISH_RETRIES = Counter("henvis_router_publish_retries_total", "Publish attempts that failed and were retried")
LATENCY = Histogram(
    "henvis_router_latency_seconds",
    "From the consent's occurred_at to the referral acknowledged on the centre's topic",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)


class Router:
    """One router process: the faust app, its table, topics and agents."""

    def __init__(self, settings: RouterSettings, registry: Registry):
        self.settings = settings
        self.registry = registry
        self.seal = Sealer(settings.manual_public_key)
        self.wait = timedelta(seconds=settings.withdrawal_wait_seconds)
        kafka = settings.kafka
        self.app = HenvisApp(
            settings.faust_app_id,
            **app_options(kafka, settings.data_dir, settings.session_timeout_seconds),
            # Optional static membership: a restarted pod takes its partitions back without
            # a rebalance (fewer rebalances, fewer re-deliveries).
            consumer_group_instance_id=settings.instance_id,
            kafka=kafka,
        )
        self.decisions = self.app.topic(
            topic_name(CONSENT_DECISIONS.name, kafka), key_type=bytes, value_type=bytes
        )
        # Ticks drive the expiry of pending withdrawals: a timer cannot write a table (faust
        # writes a table's changelog to the partition of the event in hand), so the timer
        # sends one tick to each assigned partition of this co-partitioned internal topic.
        self.ticks = self.app.topic(
            f"{settings.faust_app_id}-withdrawal-ticks",
            key_type=bytes,
            value_type=bytes,
            partitions=kafka.partitions,
            internal=True,
            retention=timedelta(hours=1),
            deleting=True,
        )
        self.cases = self.app.Table(
            "cases",
            default=None,
            partitions=kafka.partitions,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
        )
        self._outputs: dict[str, str] = {}
        # Both agents read-decide-publish-write the same keys; one at a time per process.
        self._lock = asyncio.Lock()
        self.ready = False
        self.processed = 0
        self._register()

    # ------------------------------------------------------------ wiring

    def _register(self) -> None:
        app = self.app

        @app.agent(self.decisions, concurrency=1, name="route-decisions")
        async def route_decisions(stream):
            # One event at a time, each partition in offset order: the offset is committable
            # only once handle() has published its outputs and stored its state (in_order).
            async for event in app.in_order(stream):
                await self.handle(event.value, event.message.partition)

        @app.agent(self.ticks, concurrency=1, name="expire-withdrawals")
        async def expire_withdrawals(stream):
            async for event in stream.events():
                await self.expire(event.message.partition)

        @app.timer(self.settings.check_interval_seconds)
        async def send_ticks():
            for partition in self._assigned_partitions():
                await (await self.ticks.send(value=b"tick", partition=partition))

        @app.on_rebalance_complete.connect
        async def on_ready(sender, **kwargs):
            partitions = sorted(self._assigned_partitions())
            WORKER_READY.set(1)
            if not self.ready:
                self.ready = True
                log.info("worker_ready", partitions=partitions, app_id=self.settings.faust_app_id)
            else:
                log.info("partitions_assigned", partitions=partitions)

        self.route_decisions = route_decisions
        self.expire_withdrawals = expire_withdrawals

    def _assigned_partitions(self) -> set[int]:
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # noqa: BLE001 - not started or rebalancing: nothing to tick
            return set()
        name = self.decisions.get_topic_name()
        return {tp.partition for tp in assignment if tp.topic == name}

    def _topic_name(self, base: str) -> str:
        name = self._outputs.get(base)
        if name is None:
            name = self._outputs[base] = topic_name(base, self.settings.kafka)
        return name

    def _state(self, key: str) -> domain.CaseState | None:
        value = self.cases.get(key)
        return domain.CaseState.model_validate(value) if value else None

    # ------------------------------------------------------------ handling

    async def handle(self, raw: bytes | None, partition: int) -> domain.Result:
        """Route one input message (a batch of one)."""
        [result] = await self.handle_batch([(raw, partition)])
        return result

    async def handle_batch(self, messages: list[tuple[bytes | None, int]]) -> list[domain.Result]:
        """Route a batch of input messages; never raises (faust would ack what an agent raised on).

        Order of effects, which is what makes a kill at any moment harmless:
        1. decide every message (later ones see the state the earlier ones leave behind);
        2. publish every output and wait for the broker's acknowledgement;
        3. write the new state to the table and wait until its changelog is acknowledged;
        4. only then does the agent move on and faust ack the message(s), so the offsets can be
           committed.
        A kill before 4 means the batch is processed again: the same deterministic events are
        re-sent (or dropped as duplicates if step 3 had completed), nothing is lost.
        """
        async with self._lock:
            overlay: dict[str, domain.CaseState] = {}
            writes: list[tuple[int, str, domain.CaseState]] = []
            results: list[domain.Result] = []

            def lookup(key: str) -> domain.CaseState | None:
                return overlay[key] if key in overlay else self._state(key)

            now = utcnow()
            for raw, partition in messages:
                ctx = domain.Context(registry=self.registry, now=now, seal=self.seal, partition=partition)
                try:
                    result = domain.handle_message(raw, lookup, ctx)
                except Exception as exc:  # noqa: BLE001 - a bug must not lose or block the message
                    log.error("routing_failed", error_type=type(exc).__name__, partition=partition)
                    result = domain.invalid_message(raw, ctx, f"router could not process it ({type(exc).__name__})")
                if result.duplicate:
                    DUPLICATES.inc()
                overlay.update(result.state)
                writes.extend((partition, key, state) for key, state in result.state.items())
                results.append(result)
            await self.publish([out for result in results for out in result.outputs])
            await self.remember(writes)
            for result in results:
                self._observe(result)
            self.processed += len(messages)
            return results

    async def expire(self, partition: int) -> None:
        """Send the overdue pending withdrawals of one partition to manual handling."""
        async with self._lock:
            ctx = domain.Context(registry=self.registry, now=utcnow(), seal=self.seal, partition=partition)
            for key, value in list(self.cases.items()):
                if not value or not value.get("pending_withdrawal") or value.get("partition") != partition:
                    continue
                try:
                    result = domain.expire_pending(key, domain.CaseState.model_validate(value), ctx, self.wait)
                except Exception as exc:  # noqa: BLE001 - one bad entry must not stop the sweep
                    log.error("expiry_failed", error_type=type(exc).__name__, partition=partition)
                    continue
                if result is None:
                    continue
                await self.publish(result.outputs)
                await self.remember([(partition, k, state) for k, state in result.state.items()])
                self._observe(result)

    async def remember(self, writes: list[tuple[int, str, domain.CaseState]]) -> None:
        """Store state in the table and wait until its changelog is on the broker.

        faust's ``table[key] = value`` sends the changelog in the background (to the partition
        of the event in hand); here the write goes explicitly to the input message's partition,
        so state recovers on whichever worker gets that partition, and is awaited, so a
        committed offset never points past state that could still be lost.
        """
        if not writes:
            return
        latest: dict[str, tuple[int, dict]] = {}
        for partition, key, state in writes:
            latest[key] = (partition, state.model_dump(mode="json"))
        for key, (_partition, value) in latest.items():
            self.cases.data[key] = value

        async def send_all():
            futures = [self.cases.send_changelog(partition, key, value) for key, (partition, value) in latest.items()]
            for fut in futures:
                await fut

        await self._retry(send_all)

    async def publish(self, outputs: list[domain.Output]) -> None:
        """Send every output and wait until the broker acknowledged all; retry until it does."""
        if not outputs:
            return

        async def send_all():
            # Straight to the (idempotent, acks=all) producer: faust's Topic.send adds a
            # FutureMessage and sensor bookkeeping per message that this loop does not need.
            producer = self.app.producer
            pending = [
                await producer.send(self._topic_name(out.topic), out.key, out.event.to_bytes(), None, None, None)
                for out in outputs
            ]
            for fut in pending:
                await fut

        await self._retry(send_all)

    async def _retry(self, operation) -> None:
        backoff = 0.1
        while True:
            try:
                await operation()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker may be away; never drop, retry
                PUBLISH_RETRIES.inc()
                log.warning("publish_retry", error_type=type(exc).__name__, backoff_seconds=round(backoff, 2))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_seconds)

    def _observe(self, result: domain.Result) -> None:
        now = utcnow()
        for referral in result.referrals():
            REFERRALS.labels(centre=referral.centre).inc()
            LATENCY.observe(max(0.0, (now - referral.occurred_at).total_seconds()))
            log.debug("referral_issued", referral_id=str(referral.referral_id), centre=referral.centre)
        for manual in result.manual():
            MANUAL.labels(reason=manual.reason.value).inc()
            log.info(
                "manual_handling",
                reason=manual.reason.value,
                source_event_id=str(manual.source_event_id) if manual.source_event_id else None,
                referral_id=str(manual.referral_id) if manual.referral_id else None,
            )


def build_router(settings: RouterSettings, registry: Registry) -> Router:
    return Router(settings, registry)
