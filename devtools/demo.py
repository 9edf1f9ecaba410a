"""``henvis demo``: the whole pipeline on this machine, the pilot replayed through it.

Starts the project's Kafka broker and every service as child processes (embedded defaults:
SQLite files in the run folder), replays the pilot period through the real pipeline
(consent API → Kafka → router → centre inbox → outcomes → stats), prints the evaluation
table and the URLs with demo credentials, and keeps running until Ctrl-C.
``--exit`` prints and stops, for scripts and CI.  Every run starts from a clean folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx
import yaml

from henvis.auth import ApiClient, hash_token, new_token
from henvis.registry import load_registry
from henvis.shredding import new_secret
from henvis_dev import broker
from henvis_dev import keycloak as local_keycloak
from henvis_dev.keycloak_realm import DEMO_PASSWORD, WEB_CLIENT, secret_of
from henvis_dev.supervisor import Part, Supervisor, SupervisorError

#: One line for `henvis --help`.
HELP = "start the broker and every service, replay the pilot, print the figures"


class DemoError(RuntimeError):
    """Something the person running the demo can fix; the message says how."""


@dataclass(frozen=True)
class Ports:
    broker: int = 9092
    consent: int = 8001
    centre: int = 8002
    stats: int = 8003
    keycloak: int = 8180


@dataclass
class Credentials:
    tokens: dict[str, str]  # role -> token
    caseworker_passwords: dict[str, str]  # centre slug -> password (username = slug)

    def centre_tokens(self) -> dict[str, str]:
        return {role.split(":", 1)[1]: token for role, token in self.tokens.items() if role.startswith("centre:")}


# ---------------------------------------------------------------------- preparation


def check_prerequisites(ports: Ports, with_keycloak: bool = False) -> None:
    """Fail early, saying exactly what is missing and how to fix it."""
    for tool, package in (("java", "openjdk-17-jre-headless"), ("mvn", "maven")):
        if shutil.which(tool) is None:
            raise DemoError(f"`{tool}` is not installed; the Kafka broker needs it: apt-get install {package}")
    for name, port in vars(ports).items():
        if name == "keycloak" and not with_keycloak:
            continue
        if port_taken(port):
            raise DemoError(
                f"port {port} (for {name}) is already in use on 127.0.0.1. Stop what uses it "
                f"(e.g. `ss -ltnp 'sport = :{port}'`), or choose another with --{name}-port."
            )


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def fresh_run_dir(run_dir: Path) -> None:
    """A second run starts from a clean state: stop a broker left behind, then wipe."""
    if run_dir.exists():
        broker.stop(run_dir / "kafka")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)


def make_credentials(run_dir: Path) -> Credentials:
    """A token per role and centre (only hashes go to the services) and a caseworker per centre."""
    roles = ["police", "researcher", "auditor", "operator", "manual-handling"]
    roles += [f"centre:{slug}" for slug in load_registry().slugs]
    tokens = {role: new_token() for role in roles}
    clients = [
        ApiClient(name=f"demo-{role.replace(':', '-')}", role=role, token_sha256=hash_token(token)).model_dump()
        for role, token in tokens.items()
    ]
    (run_dir / "api-clients.yaml").write_text(yaml.safe_dump(clients, sort_keys=False), encoding="utf-8")
    passwords = {slug: f"henvis-demo-{slug}" for slug in load_registry().slugs}
    credentials_file = run_dir / "demo-credentials.json"
    credentials_file.write_text(json.dumps({"tokens": tokens, "caseworkers": passwords}, indent=2), encoding="utf-8")
    credentials_file.chmod(0o600)
    return Credentials(tokens, passwords)


def service_env(run_dir: Path, ports: Ports, credentials: Credentials) -> dict[str, str]:
    return {
        # The key store's key-encryption key and the case pseudonym key, made for this run only.
        "HENVIS_CONSENT_KEY_ENCRYPTION_KEYS": f"demo:{new_secret()}",
        "HENVIS_CONSENT_CASE_PSEUDONYM_KEY": new_secret(),
        "HENVIS_RUN_DIR": str(run_dir),
        "HENVIS_LOG_LEVEL": "INFO",
        "HENVIS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports.broker}",
        "HENVIS_KAFKA_PARTITIONS": "3",
        "HENVIS_API_CLIENTS_FILE": str(run_dir / "api-clients.yaml"),
        # The centre inbox gets each referral's data key from the consent service's key store,
        # asking with each centre's own credential.
        "HENVIS_CENTRE_KEY_STORE_URL": f"http://127.0.0.1:{ports.consent}",
        "HENVIS_CENTRE_KEY_STORE_TOKENS": json.dumps(credentials.centre_tokens()),
        "HENVIS_CENTRE_SESSION_SECRET": new_token(),
        "HENVIS_CENTRE_SECURE_COOKIES": "false",
        "PYTHONUNBUFFERED": "1",
    }


def sign_in_env(issuer: str) -> dict[str, str]:
    """The centre inbox and the researchers' page signing people in at the demo's Keycloak."""
    env = {"HENVIS_STATS_SESSION_SECRET": new_token()}
    for prefix in ("HENVIS_CENTRE_", "HENVIS_STATS_"):
        env |= {
            f"{prefix}LOGIN": "oidc",
            f"{prefix}OIDC_ISSUER": issuer,
            f"{prefix}OIDC_CLIENT_ID": WEB_CLIENT,
            f"{prefix}OIDC_CLIENT_SECRET": secret_of(WEB_CLIENT),
        }
    return env


def pipeline_parts(ports: Ports) -> list[Part]:
    """Every part, in start order: consumers before the producers that feed them."""

    def http(port: int) -> str:
        return f"http://127.0.0.1:{port}/readyz"

    return [
        Part("stats-worker", ["stats", "worker"]),
        Part(
            "stats-api",
            ["stats", "serve", "--host", "127.0.0.1", "--port", str(ports.stats)],
            ready_url=http(ports.stats),
        ),
        Part("centre-worker", ["centre", "worker"]),
        Part(
            "centre-api",
            ["centre", "serve", "--host", "127.0.0.1", "--port", str(ports.centre)],
            ready_url=http(ports.centre),
        ),
        Part("router", ["router", "worker"]),
        Part("consent-relay", ["consent", "relay"]),
        Part(
            "consent-api",
            ["consent", "serve", "--host", "127.0.0.1", "--port", str(ports.consent)],
            ready_url=http(ports.consent),
        ),
    ]


def add_caseworkers(supervisor: Supervisor, credentials: Credentials) -> None:
    import subprocess

    for slug, password in credentials.caseworker_passwords.items():
        subprocess.run(
            [
                supervisor.python,
                "-m",
                "henvis.cli",
                "centre",
                "add-user",
                "--centre",
                slug,
                "--username",
                slug,
                "--password-stdin",
            ],
            input=password.encode(),
            env={**os.environ, **supervisor.env},
            cwd=supervisor.run_dir,
            check=True,
            capture_output=True,
        )


# ---------------------------------------------------------------------- running


class ProgressBar:
    """One line that redraws itself: what is happening and how far it is."""

    def __init__(self, stream: TextIO = sys.stdout, width: int = 30):
        self.stream = stream
        self.width = width
        self.interactive = stream.isatty()
        self._last_stage: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        filled = int(self.width * done / total) if total else self.width
        line = f"  {stage:<28} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
        elif done >= total or stage != self._last_stage:
            self.stream.write(line + "\n")
        self._last_stage = stage
        self.stream.flush()


def start_pipeline(
    run_dir: Path, ports: Ports, say=print, with_keycloak: bool = False
) -> tuple[Supervisor, Credentials]:
    check_prerequisites(ports, with_keycloak)
    if with_keycloak:
        local_keycloak.find_java()  # before anything starts: says how to get a Java 21+
    fresh_run_dir(run_dir)
    say(f"Run folder: {run_dir}")
    broker.ensure_jars(progress=say)
    handle = broker.start(run_dir / "kafka", port=ports.broker, progress=say)
    credentials = make_credentials(run_dir)
    env = service_env(run_dir, ports, credentials)
    if with_keycloak:
        try:
            env |= sign_in_env(local_keycloak.start(run_dir / "keycloak", port=ports.keycloak, progress=say).issuer)
        except BaseException:
            broker.stop(handle.run_dir)
            raise
    supervisor = Supervisor(run_dir, env)
    try:
        add_caseworkers(supervisor, credentials)
        for part in pipeline_parts(ports):
            started = time.monotonic()
            supervisor.start(part)
            say(f"  {part.name:<14} ready in {time.monotonic() - started:4.1f}s")
    except BaseException:
        supervisor.stop_all()
        broker.stop(handle.run_dir)
        local_keycloak.stop(run_dir / "keycloak")
        raise
    return supervisor, credentials


def stop_pipeline(supervisor: Supervisor, run_dir: Path) -> None:
    supervisor.stop_all()
    broker.stop(run_dir / "kafka")
    local_keycloak.stop(run_dir / "keycloak")


def replay_pilot(ports: Ports, credentials: Credentials, progress) -> dict:
    from henvis_dev.pilot import generate_pilot, replay

    plan = generate_pilot()
    return replay(
        plan,
        consent_url=f"http://127.0.0.1:{ports.consent}",
        consent_token=credentials.tokens["police"],
        centre_url=f"http://127.0.0.1:{ports.centre}",
        centre_tokens=credentials.centre_tokens(),
        progress=progress,
    )


def wait_for_stats(ports: Ports, token: str, expected_accepted: int, timeout: float = 120) -> dict:
    """Poll the researchers' API until every accepted referral has reached the figures."""
    deadline = time.monotonic() + timeout
    funnel: dict = {}
    while time.monotonic() < deadline:
        funnel = fetch(ports.stats, "/v1/funnel", token)
        if funnel.get("accepted") == expected_accepted and _outcomes_settled(ports, token, funnel):
            return funnel
        time.sleep(0.5)
    raise DemoError(
        f"the statistics did not reach {expected_accepted} accepted referrals within {timeout:.0f}s: {funnel}"
    )


def _outcomes_settled(ports: Ports, token: str, funnel: dict) -> bool:
    """The same figures twice in a row: the stats worker has caught up with the outcomes."""
    time.sleep(1.0)
    return fetch(ports.stats, "/v1/funnel", token) == funnel


def fetch(port: int, path: str, token: str) -> dict:
    response = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    response.raise_for_status()
    return response.json()


# ---------------------------------------------------------------------- output


def percent(value) -> str:
    """A rate as the status report rounds it; a suppressed rate (None) as a dash."""
    if value is None:
        return "–"
    return f"{round(value * 100)} %" if isinstance(value, (int, float)) else str(value)


def evaluation_table(funnel: dict, by_municipality: list[dict]) -> str:
    """The figures researchers would report, small cells already suppressed by the stats API."""
    header = f"{'municipality':<20}{'offered':>9}{'accepted':>10}{'acceptance':>12}{'1st interview':>15}{'follow-up':>11}{'withdrawn':>11}"
    lines = [header, "-" * len(header)]
    rows = [*by_municipality, {**funnel, "municipality": "All eleven"}]
    for row in rows:
        lines.append(
            f"{row.get('municipality_name') or row.get('municipality')!s:<20}"
            f"{row.get('offered')!s:>9}{row.get('accepted')!s:>10}"
            f"{percent(row.get('acceptance_rate')):>12}{percent(row.get('first_interview_rate')):>15}"
            f"{percent(row.get('follow_up_rate')):>11}{row.get('withdrawn')!s:>11}"
        )
    return "\n".join(lines)


def print_summary(
    ports: Ports, credentials: Credentials, funnel: dict, table: str, say=print, with_keycloak: bool = False
) -> None:
    say("")
    say(
        "Evaluation of the pilot period (<5: withheld, a count of 1–4 persons or one hidden with it so"
        " that no combination of tables reveals it; –: a rate built on one):"
    )
    say(table)
    say("")
    say(
        f"Accepted: {funnel.get('accepted')}   first-interview rate: {percent(funnel.get('first_interview_rate'))}"
        f"   follow-up rate: {percent(funnel.get('follow_up_rate'))}"
    )
    say("")
    if with_keycloak:
        say(
            f"Centre inbox (caseworkers): http://127.0.0.1:{ports.centre}/   sign in at Keycloak as e.g."
            f" caseworker-herning / {DEMO_PASSWORD} (auditor / {DEMO_PASSWORD}: the access log)"
        )
        say(
            f"Researchers' page:          http://127.0.0.1:{ports.stats}/   sign in at Keycloak as researcher / {DEMO_PASSWORD}"
        )
        say(f"Keycloak (realm henvis):    http://127.0.0.1:{ports.keycloak}/realms/henvis/account")
    else:
        say(
            f"Centre inbox (caseworkers): http://127.0.0.1:{ports.centre}/   log in as e.g. herning / {credentials.caseworker_passwords['herning']}"
        )
        say(
            f"Researchers' page:          http://127.0.0.1:{ports.stats}/   researcher token: {credentials.tokens['researcher']}"
        )
    say(
        f"Police API (OpenAPI docs):  http://127.0.0.1:{ports.consent}/docs   police token: {credentials.tokens['police']}"
    )
    say("All demo tokens and passwords: demo-credentials.json in the run folder.")


# ---------------------------------------------------------------------- command


def run(run_dir: Path, ports: Ports, exit_after: bool, say=print, with_keycloak: bool = False) -> int:
    started = time.monotonic()
    say("Starting the Kafka broker" + (", Keycloak" if with_keycloak else "") + " and every henvis service ...")
    supervisor, credentials = start_pipeline(run_dir, ports, say, with_keycloak)
    interrupted = False

    def on_signal(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        say("Replaying the pilot period through the pipeline ...")
        plan_summary = replay_pilot(ports, credentials, ProgressBar())
        say("Waiting for the statistics to catch up ...")
        funnel = wait_for_stats(ports, credentials.tokens["researcher"], plan_summary["accepted"])
        by_municipality = fetch(ports.stats, "/v1/funnel/by-municipality", credentials.tokens["researcher"])
        rows = by_municipality.get("rows", by_municipality) if isinstance(by_municipality, dict) else by_municipality
        print_summary(ports, credentials, funnel, evaluation_table(funnel, rows), say, with_keycloak)
        say(f"\nDemo ready in {time.monotonic() - started:.0f}s.")
        if not exit_after:
            say("Press Ctrl-C to stop every service.")
            while True:
                supervisor.check_alive()
                time.sleep(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        say("Stopping every service ...")
        stop_pipeline(supervisor, run_dir)
        say("Stopped.")
    return 130 if interrupted and exit_after else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="henvis demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--exit", action="store_true", help="exit after printing the figures (for scripts and CI)")
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("HENVIS_RUN_DIR", ".run")) / "demo")
    parser.add_argument(
        "--keycloak",
        action="store_true",
        help="caseworkers, auditors and researchers sign in at a local Keycloak (Java 21+) instead of passwords/tokens",
    )
    defaults = Ports()
    for name in vars(defaults):
        parser.add_argument(f"--{name}-port", type=int, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    ports = Ports(args.broker_port, args.consent_port, args.centre_port, args.stats_port, args.keycloak_port)
    try:
        return run(args.run_dir.resolve(), ports, args.exit, with_keycloak=args.keycloak)
    except (DemoError, SupervisorError, broker.BrokerError, local_keycloak.KeycloakError) as exc:
        print(f"henvis demo: {exc}", file=sys.stderr)
        return 1
