"""What every benchmark needs: a broker, a scratch PostgreSQL database, the real pipeline,
valid decisions, a topic watcher that timestamps arrivals, and one way to print figures.

Benchmarks print figures and never assert; a figure is always shown next to the baseline
measured in the same run, on the same machine and broker, with the ratio between them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import queue
import random
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import json

from henvis.logging import configure_logging

# The services log to their own files; here only figures (and warnings) go to the terminal.
configure_logging("bench", "WARNING")
# kafka-python's "task blocked the event loop" warnings on a busy machine are not figures.
__import__("logging").getLogger("kafka").setLevel("ERROR")

# ---------------------------------------------------------------------- printing


def machine_line() -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}  {platform.node()}  {os.cpu_count()} cores  "
        f"load {load}  Python {platform.python_version()}"
    )


def title(text: str) -> None:
    print(f"\n== {text}", flush=True)


def figure(label: str, value: float, unit: str, baseline: float | None = None, note: str = "") -> None:
    """One measured figure; with ``baseline``, the ratio product/baseline after it."""
    ratio = f"  ratio {value / baseline:6.{3 if value < baseline else 2}f}" if baseline else ""
    print(
        f"  {label:<44}{value:>10.{2 if abs(value) < 10 else 1}f} {unit:<10}{ratio}{'  ' + note if note else ''}",
        flush=True,
    )


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


# ---------------------------------------------------------------------- infrastructure


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def kafka_broker(bootstrap: str | None) -> Iterator[str]:
    """The broker at ``bootstrap``, or a throwaway one started (and stopped) for the run."""
    if bootstrap:
        yield bootstrap
        return
    from henvis_dev import broker

    run_dir = Path(tempfile.mkdtemp(prefix="henvis-bench-broker-"))
    handle = broker.start(run_dir, port=free_port(), progress=lambda *_: None)
    try:
        yield handle.bootstrap
    finally:
        broker.stop(run_dir)


@contextlib.contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A fresh ``henvis_bench_*`` database on the server of ``admin_url``, dropped afterwards."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    admin = sa.create_engine(
        make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    name = f"henvis_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def output_span(settings, topic: str, expected: int, timeout: float) -> tuple[int, float]:
    """Read ``topic`` (read_committed) until it held ``expected`` records; return (count,
    seconds from the first to the last record's broker timestamp).  Counted by records read,
    not by end offsets, which also count transaction markers."""
    from kafka import KafkaConsumer, TopicPartition

    from henvis.kafka import consumer_config

    consumer = KafkaConsumer(**{**consumer_config(settings, None, "bench-reader"), "enable_auto_commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        first, last, count = None, None, 0
        while count < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} did not reach {expected} records ({count})")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    count += 1
                    first = record.timestamp if first is None else min(first, record.timestamp)
                    last = record.timestamp if last is None else max(last, record.timestamp)
        return count, (last - first) / 1000.0
    finally:
        consumer.close()


def rss_mb(pid: int) -> float:
    """Resident memory of one process, from /proc (MiB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hertz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hertz, sum(ticks) / hertz


def cpu_seconds(pid: int) -> float:
    """User + system CPU time one process has used so far, from /proc (seconds).

    On a machine shared with other work, CPU per request is steadier than requests/s."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def py_spy(pid: int, seconds: float, prefix: str):
    """Sample ``pid`` with py-spy for ``seconds`` (``pip install py-spy``): PREFIX.txt holds
    the collapsed stacks (summarise with ``bench/_common.py top PREFIX.txt``)."""
    import subprocess

    command = [
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--nonblocking",
        "--gil",
    ]
    return subprocess.Popen(
        [*command, "--format", "raw", "-o", f"{prefix}.txt"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def top_frames(collapsed: Path, count: int = 25) -> list[tuple[float, str]]:
    """Share of samples in which each frame appears (inclusive), from py-spy's raw output."""
    from collections import Counter

    inclusive: Counter = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        total += int(samples)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(samples)
    return [(100 * n / total, frame) for frame, n in inclusive.most_common(count)]


# ---------------------------------------------------------------------- decisions

CODES = ["657", "661", "665", "671", "740", "756", "760", "773", "779", "787", "791"]


def decision(index: int, occurred_at: str = "2026-03-02T10:15:00+01:00") -> tuple[uuid.UUID, bytes]:
    """A valid, synthetic ``consent.given`` (its own case, one of the eleven municipalities)."""
    event_id = uuid.uuid4()
    rng = random.Random(event_id.int)
    body = {
        "event_id": str(event_id),
        "event_type": "consent.given",
        "occurred_at": occurred_at,
        "case_ref": f"4100-{rng.randrange(10000, 99999)}-{index % 100000:05d}-26",
        "offence": "drink_driving",
        "charged_on": date(2026, 3, 1).isoformat(),
        "municipality_code": CODES[index % len(CODES)],
        "person": {"full_name": "Bench Testesen", "phone": f"+452{rng.randrange(10**7):07d}"},
        "consent_text_version": "2020-03",
        "recorded_by": "bench",
    }
    return event_id, json.dumps(body).encode()


# ---------------------------------------------------------------------- pipeline


class Pipeline:
    """The real parts (``henvis <service> <command>`` processes) via the demo's helpers."""

    def __init__(
        self, bootstrap: str, parts: list[str], extra_env: dict[str, str] | None = None, database: str | None = None
    ):
        from henvis_dev.demo import Ports, make_credentials, pipeline_parts, service_env
        from henvis_dev.supervisor import Supervisor

        self.run_dir = Path(tempfile.mkdtemp(prefix="henvis-bench-run-"))
        port = bootstrap.rsplit(":", 1)[1]
        self.ports = Ports(broker=int(port), consent=free_port(), centre=free_port(), stats=free_port())
        self.credentials = make_credentials(self.run_dir)
        self.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
        env = {
            **service_env(self.run_dir, self.ports, self.credentials),
            "HENVIS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HENVIS_KAFKA_TOPIC_PREFIX": self.topic_prefix,
            **(extra_env or {}),
        }
        if database:
            env["HENVIS_CONSENT_DATABASE_URL"] = database
        self.env = env
        self.supervisor = Supervisor(self.run_dir, env)
        wanted = {part.name: part for part in pipeline_parts(self.ports)}
        self.parts = [wanted[name] for name in parts]
        self.consent_url = f"http://127.0.0.1:{self.ports.consent}"

    def __enter__(self) -> Pipeline:
        try:
            for part in self.parts:
                self.supervisor.start(part, timeout=180)
        except BaseException:
            self.supervisor.stop_all()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.supervisor.stop_all()

    def pid(self, name: str) -> int:
        return self.supervisor.children[name].process.pid

    def kafka_settings(self):
        from henvis.settings import KafkaSettings

        return KafkaSettings(
            bootstrap_servers=self.env["HENVIS_KAFKA_BOOTSTRAP_SERVERS"],
            topic_prefix=self.topic_prefix,
            partitions=int(self.env.get("HENVIS_KAFKA_PARTITIONS", "3")),
        )

    def centre_topics(self) -> list[str]:
        from henvis.kafka import centre_topic_name
        from henvis.registry import load_registry

        registry = load_registry()
        return [centre_topic_name(slug, self.kafka_settings(), registry) for slug in registry.slugs]


# ---------------------------------------------------------------------- arrivals


def _watch(bootstrap: str, topics: list[str], ready, out, stop) -> None:
    """Child process: read ``topics`` from their current end, send (key, arrival time) out."""
    import logging

    from kafka import KafkaConsumer, TopicPartition

    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # a race on close() is not a figure
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=5,
        fetch_min_bytes=1,
    )
    # Topics may be created by the services a moment after we start: wait for every one.
    partitions: list[TopicPartition] = []
    for topic in topics:
        while not consumer.partitions_for_topic(topic):
            consumer.topics()  # refresh metadata
            time.sleep(0.2)
        partitions += [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)
    ready.set()
    while not stop.is_set():
        batch = []
        for records in consumer.poll(timeout_ms=100).values():
            now = time.time()
            batch += [(record.key, now) for record in records]
        if batch:
            out.put(batch)
    consumer.close()


class ArrivalWatcher:
    """Timestamps (wall clock, shared by processes on this machine) each record's arrival.

    Runs in its own process so the load generator's CPU use cannot delay the reading.
    """

    def __init__(self, bootstrap: str, topics: list[str]):
        context = multiprocessing.get_context("spawn")
        self._ready, self._stop, self._out = context.Event(), context.Event(), context.Queue()
        self._process = context.Process(
            target=_watch, args=(bootstrap, topics, self._ready, self._out, self._stop), daemon=True
        )
        self.arrivals: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._running = True

    def __enter__(self) -> ArrivalWatcher:
        self._process.start()
        if not self._ready.wait(120):
            raise RuntimeError("arrival watcher did not get its partitions")
        self._drainer.start()
        return self

    def _drain(self) -> None:
        while self._running:
            try:
                batch = self._out.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._lock:
                for key, when in batch:
                    self.arrivals.setdefault(key, when)

    def arrived(self, key: bytes) -> float | None:
        with self._lock:
            return self.arrivals.get(key)

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def wait_for(self, keys, timeout: float) -> int:
        """Wait until every key has arrived (or ``timeout``); how many arrived."""
        keys = list(keys)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                missing = sum(1 for key in keys if key not in self.arrivals)
            if not missing:
                break
            time.sleep(0.1)
        with self._lock:
            return sum(1 for key in keys if key in self.arrivals)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._process.join(15)
        if self._process.is_alive():
            self._process.kill()
        self._running = False
        self._drainer.join(5)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "top":
    for share, frame in top_frames(Path(sys.argv[2]), 40):
        print(f"{share:5.1f} %  {frame}")
