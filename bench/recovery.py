"""Recovery after SIGKILL under a steady load, and each worker's resident memory.

    .venv/bin/python bench/recovery.py [--bootstrap HOST:PORT] [--rate 20] [--session-timeout 10]

Runs the real pipeline (consent API + relay, router, centre worker, stats worker; SQLite,
the demo's settings) under the supervisor and posts decisions at a steady ``--rate``.
Then, one at a time, it SIGKILLs a worker, restarts it at once (as Kubernetes would) and
measures, from the kill:

* ``ready``: the new process logged ``worker_ready`` (partitions assigned);
* ``flowing``: the first referral posted *after* the kill reached the part's sink -
  router and relay: a centre topic (a watcher timestamps arrivals); centre worker: its
  inbox table; stats worker: its referrals table.

The baseline is the consumer session timeout each worker is configured with: a killed
dynamic member's partitions stay assigned to it until the group coordinator gives up on it.
The router and the stats worker are static members by default (their host name), so a
restart takes the partitions back at once and should beat the baseline by far.  The relay
has no consumer group; its baseline is its own poll interval.

Memory: VmRSS (/proc) of every part once ready with no traffic, and the peak during the
load.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import httpx
import sqlalchemy as sa
from _common import ArrivalWatcher, Pipeline, decision, figure, rss_mb, title

from henvis.db import make_engine
from henvis.schemas.events import referral_id_for

PARTS = ["stats-worker", "centre-worker", "router", "consent-relay", "consent-api"]
WORKERS = ["router", "centre-worker", "stats-worker", "consent-relay"]


class SteadyLoad(threading.Thread):
    """Posts decisions at ``rate``/s; remembers when each accepted one was answered."""

    def __init__(self, url: str, token: str, rate: float):
        super().__init__(daemon=True)
        self.url, self.rate = url, rate
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.accepted: list[tuple[float, str]] = []  # (wall-clock answered, referral_id)
        self.refused = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def run(self) -> None:
        began, index = time.monotonic(), 0
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as http:
            while not self.halt.is_set():
                delay = began + index / self.rate - time.monotonic()
                if delay > 0:
                    self.halt.wait(delay)
                event_id, body = decision(index)
                try:
                    status = http.post("/v1/decisions", content=body).status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    if status == 202:
                        self.accepted.append((time.time(), str(referral_id_for(event_id))))
                    else:
                        self.refused += 1
                index += 1

    def since(self, moment: float) -> list[str]:
        with self.lock:
            return [referral_id for answered, referral_id in self.accepted if answered > moment]


def sink_probe(name: str, pipeline: Pipeline, watcher: ArrivalWatcher):
    """A function: referral ids -> True once any of them has reached ``name``'s sink."""
    if name in ("router", "consent-relay"):
        return lambda ids: any(watcher.arrived(i.encode()) for i in ids)
    database = {"centre-worker": "centre.db", "stats-worker": "stats.db"}[name]
    engine = make_engine(f"sqlite:///{pipeline.run_dir / database}")
    table = sa.table("referrals", sa.column("referral_id"))

    def probe(ids: list[str]) -> bool:
        if not ids:
            return False
        with engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(table.c.referral_id.in_(ids[:500]))
                ).scalar()
                > 0
            )

    return probe


def recover(pipeline: Pipeline, load: SteadyLoad, name: str, probe, limit: float) -> tuple[float, float]:
    killed_wall, killed = time.time(), time.monotonic()
    pipeline.supervisor.kill(name, signal.SIGKILL)
    pipeline.supervisor.restart(name, timeout=limit)
    ready = time.monotonic() - killed
    while not probe(load.since(killed_wall)):
        if time.monotonic() - killed > limit:
            return ready, float("nan")
        time.sleep(0.05)
    return ready, time.monotonic() - killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="an existing broker; default: start a throwaway one")
    parser.add_argument("--rate", type=float, default=20, help="steady decisions/s during the kills")
    parser.add_argument(
        "--session-timeout", type=float, default=10, help="consumer session timeout of every worker (s)"
    )
    parser.add_argument(
        "--service-defaults",
        action="store_true",
        help="keep each worker's own default settings (session timeouts: router 30 s, centre 45 s, stats 30 s)",
    )
    parser.add_argument("--load-seconds", type=float, default=10, help="load time before the memory peak is read")
    parser.add_argument("--workers", default=",".join(WORKERS), help="which workers to kill, in order")
    args = parser.parse_args(argv)
    timeout = args.session_timeout
    env = {
        "HENVIS_ROUTER_SESSION_TIMEOUT_SECONDS": f"{timeout:g}",
        "HENVIS_CENTRE_CONSUMER_SESSION_TIMEOUT_MS": str(int(timeout * 1000)),
        "HENVIS_STATS_SESSION_TIMEOUT_SECONDS": f"{timeout:g}",
        "HENVIS_LOG_LEVEL": "INFO",
    }
    baselines = {"router": timeout, "centre-worker": timeout, "stats-worker": timeout, "consent-relay": 0.2}
    if args.service_defaults:
        from henvis.services.centre.settings import CentreSettings
        from henvis.services.router.settings import RouterSettings
        from henvis.services.stats.settings import StatsSettings

        env = {"HENVIS_LOG_LEVEL": "INFO"}
        baselines.update(
            {
                "router": RouterSettings.model_fields["session_timeout_seconds"].default,
                "centre-worker": CentreSettings.model_fields["consumer_session_timeout_ms"].default / 1000,
                "stats-worker": StatsSettings.model_fields["session_timeout_seconds"].default,
            }
        )

    print(f"Recovery and memory   {_common.machine_line()}")
    with (
        _common.kafka_broker(args.bootstrap) as bootstrap,
        Pipeline(bootstrap, PARTS, env) as pipeline,
        ArrivalWatcher(bootstrap, pipeline.centre_topics()) as watcher,
    ):
        title("resident memory (VmRSS, MiB)")
        at_rest = {name: rss_mb(pipeline.pid(name)) for name in PARTS}
        load = SteadyLoad(pipeline.consent_url, pipeline.credentials.tokens["police"], args.rate)
        load.start()
        peak = dict(at_rest)
        stop_at = time.monotonic() + args.load_seconds
        while time.monotonic() < stop_at:
            for name in PARTS:
                peak[name] = max(peak[name], rss_mb(pipeline.pid(name)))
            time.sleep(0.25)
        for name in PARTS:
            figure(
                f"{name}: at rest / under {args.rate:g}/s",
                peak[name],
                "MiB",
                note=f"at rest {at_rest[name]:.1f} MiB",
            )

        title(f"SIGKILL + immediate restart under {args.rate:g} decisions/s (seconds from the kill)")
        results = {}
        for name in args.workers.split(","):
            probe = sink_probe(name, pipeline, watcher)
            ready, flowing = recover(pipeline, load, name, probe, limit=max(120.0, 6 * baselines[name]))
            results[name] = (ready, flowing)
            figure(f"{name}: ready again", ready, "s")
            figure(
                f"{name}: referrals flowing again",
                flowing,
                "s",
                baselines[name],
                note=f"vs {'poll interval' if name == 'consent-relay' else 'session timeout'} {baselines[name]:g} s",
            )
        load.halt.set()
        load.join(30)
        posted = [referral_id for _, referral_id in load.accepted]
        arrived = watcher.wait_for([i.encode() for i in posted], 120)
    title("summary")
    for name, (ready, flowing) in results.items():
        print(
            f"  {name:<14} ready {ready:5.1f} s   flowing {flowing:5.1f} s   baseline {baselines[name]:g} s   ratio {flowing / baselines[name]:.2f}"
        )
    print(
        f"  {len(posted)} decisions accepted during the run, {arrived} reached a centre topic, {load.refused} not accepted"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
