"""The project's own local Apache Kafka 4.x broker (single node, KRaft) for the demo and tests.

DESIGN §7 asks for a real broker started from the Maven Central artifacts, with no Docker and
no tarball: Maven resolves the jars once (``tools/kafka/pom.xml``) into a per-version cache,
and the broker runs as a detached JVM whose whole state lives in one run folder::

    <run dir>/server.properties   written on every start (ports may change)
    <run dir>/broker.pid          pid of the running JVM; broker.port: its client port
    <run dir>/broker.out          JVM stdout/stderr (WARN and above, crashes)
    <run dir>/logs/server.log     the broker's full INFO log
    <run dir>/data/               log.dirs (topics, offsets, KRaft metadata)

Starting twice is harmless (the second call finds the live broker and returns its handle),
and a stop followed by a start on the same folder keeps topics and committed offsets,
because storage is only formatted when ``data/meta.properties`` is missing.

Command line: ``henvis broker start|stop|status`` or ``python -m henvis_dev.broker ...``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from henvis_dev.processes import (
    alive,
    clear_state,
    command_line,
    file_lock,
    find_maven,
    read_int,
    read_text,
    spawn_detached,
    terminate,
    write_state,
)

#: One line for `henvis --help`.
HELP = "start, stop or inspect the project's local Kafka broker"

HOST = "127.0.0.1"
TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools" / "kafka"
POM = TOOLS_DIR / "pom.xml"
LOG4J2_CONFIG = TOOLS_DIR / "log4j2.yaml"
MARKER = ".henvis-complete"
STARTUP_TIMEOUT_S = 60.0
MIN_JAVA = 17

Progress = Callable[[str], object]


class BrokerError(RuntimeError):
    """A broker operation failed; the message says what to do about it."""


@dataclass(frozen=True)
class BrokerHandle:
    """Where a running local broker listens and where its state lives."""

    bootstrap: str
    pid: int
    port: int
    run_dir: Path


# --------------------------------------------------------------------------- paths


def default_run_dir() -> Path:
    """The demo's run folder, overridable with HENVIS_RUN_DIR so tests and demos stay apart."""
    return Path(os.environ.get("HENVIS_RUN_DIR", ".run")) / "kafka"


def kafka_version() -> str:
    """The Kafka version pinned in the pom, so the cache folder and messages name it."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", _pom_text())
    if not match:
        raise BrokerError(f"{POM} has no <kafka.version> property")
    return match.group(1)


def _pom_text() -> str:
    """The pom's text; a clear error when henvis runs without its source tree."""
    try:
        return POM.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BrokerError(f"{POM} not found: the local broker needs the henvis source tree") from None


def _default_lib_dir() -> Path:
    """Per-version jar cache, so upgrading the pom never mixes jars of two versions."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "henvis" / "kafka" / kafka_version() / "lib"


# --------------------------------------------------------------------------- tools


def _require_java() -> str:
    """Path of a Java >= 17 (Kafka 4 needs it); says what to install otherwise."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            f"`java` is not on PATH: the Kafka broker needs Java {MIN_JAVA}+ "
            "(Debian/Ubuntu: `sudo apt-get install openjdk-17-jre-headless`)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(1\.)?(\d+)', out)
    if match and int(match.group(2)) < MIN_JAVA:
        raise BrokerError(f"{java} is Java {match.group(2)}; Kafka 4 needs Java {MIN_JAVA}+")
    return java


def _require_maven() -> str:
    """Path of ``mvn``, needed once to fetch the jars; says what to install otherwise."""
    mvn = find_maven()
    if mvn is None:
        raise BrokerError(
            "`mvn` is not on PATH: Maven is needed once to download the Kafka jars "
            "(Debian/Ubuntu: `sudo apt-get install maven`)"
        )
    return mvn


# --------------------------------------------------------------------------- jars


def ensure_jars(cache_dir: Path | None = None, progress: Progress = print) -> Path:
    """Return the folder of broker jars, running Maven only when the cache is cold.

    The marker file holds a digest of the pom, so editing the pom (a new Kafka or log4j
    version) re-resolves, while the common warm case costs one small file read.
    """
    lib = Path(cache_dir) if cache_dir else _default_lib_dir()
    stamp = hashlib.sha256(_pom_text().encode()).hexdigest()
    if read_text(lib / MARKER) == stamp:
        return lib
    with file_lock(lib.parent / f".{lib.name}.lock"):
        if read_text(lib / MARKER) == stamp:  # another process filled it meanwhile
            return lib
        _require_java()
        began = time.monotonic()
        progress(f"Resolving Kafka {kafka_version()} jars from Maven Central into {lib} (first run only) ...")
        partial = lib.with_name(lib.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        _run_maven(partial, progress)
        (partial / MARKER).write_text(stamp)
        shutil.rmtree(lib, ignore_errors=True)
        partial.rename(lib)
        jars = len(list(lib.glob("*.jar")))
        progress(f"Kafka jars ready: {jars} jars in {time.monotonic() - began:.1f}s")
    return lib


def _run_maven(out_dir: Path, progress: Progress) -> None:
    """Copy the pom's runtime dependencies into out_dir, reporting download progress."""
    cmd = [
        _require_maven(),
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={out_dir}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: deque[str] = deque(maxlen=40)
    downloads = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip())
        if "Downloaded from" in line:
            downloads += 1
            if downloads % 50 == 0:
                progress(f"  ... {downloads} files downloaded")
    if proc.wait() != 0:
        raise BrokerError("Maven could not resolve the Kafka jars:\n" + "\n".join(tail))


# --------------------------------------------------------------------------- state files


def _write_state(handle: BrokerHandle) -> None:
    write_state(handle.run_dir, "broker", handle.pid, handle.port)


def _clear_state(run_dir: Path) -> None:
    clear_state(run_dir, "broker")


# --------------------------------------------------------------------------- processes


def _is_our_broker(pid: int, run_dir: Path) -> bool:
    """Guard against a recycled pid: the process must be kafka.Kafka on this run folder."""
    if not alive(pid):
        return False
    args = command_line(pid)
    if args is None:
        return True  # no /proc (not Linux): trust the pid file
    return b"kafka.Kafka" in args and str(run_dir / "server.properties").encode() in args


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM (Kafka then shuts down cleanly), SIGKILL if it has not exited by timeout."""
    if not terminate(pid, timeout):
        raise BrokerError(f"broker pid {pid} did not exit even after SIGKILL")


# --------------------------------------------------------------------------- ports


def _port_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be listened on (SO_REUSEADDR, as the JVM does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _check_port_free(port: int, option: str) -> None:
    """Fail early with a useful message instead of a Java bind stack trace."""
    if not _port_free(port):
        raise BrokerError(
            f"port {port} on {HOST} is already in use by another process; "
            f"choose another port with {option} N (or stop what is listening there)"
        )


def _pick_controller_port(port: int) -> int:
    """The KRaft controller's port: port+1 by convention (9092 -> 9093), else any free one."""
    if port < 65535 and _port_free(port + 1):
        return port + 1
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- configuration


def _server_properties(run_dir: Path, port: int, controller_port: int) -> str:
    """A single-node broker+controller on loopback, with replication settings for one node."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # Static voters: no directory id to remember, and the controller port may change
        # between restarts without touching the stored metadata.
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(run_dir / "data"),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
        # A controlled shutdown first takes leadership from every partition; with one node
        # nobody takes it over, and the transaction coordinator skips the markers of a commit
        # in flight for partitions without a leader ("likely deleted"): the outage test found
        # a referral committed whose state change was not.  A plain clean shutdown leaves the
        # commit pending in the transaction log for the restarted coordinator
        # (docs/delivery-guarantees.md, broker outages).
        "controlled.shutdown.enable": "false",
        # Without a controlled shutdown the restarted broker waits for the old registration's
        # session to expire: 6 s instead of Kafka's 9 s, still far above a busy machine's pauses.
        "broker.session.timeout.ms": "6000",
        "broker.heartbeat.interval.ms": "1500",
        "num.partitions": "6",
        "auto.create.topics.enable": "true",  # convenience for the demo; henvis creates its own
    }
    lines = ["# Written by henvis_dev.broker on every start; edits are overwritten."]
    return "\n".join(lines + [f"{key}={value}" for key, value in settings.items()]) + "\n"


# Kafka's own default.  256 MB ran out (OutOfMemoryError) after a few thousand partitions: a
# full test session creates fifteen topics per test, and the local broker keeps them.
DEFAULT_HEAP = "1g"


def _jvm_options(run_dir: Path, heap: str) -> list[str]:
    """Heap, and log4j2 pointed at our config writing into the run folder."""
    return [
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-Djava.awt.headless=true",
        "-XX:+ExitOnOutOfMemoryError",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={run_dir / 'logs'}",
    ]


def _random_cluster_id() -> str:
    """A Kafka Uuid string (URL-safe base64, no padding) that cannot look like a CLI option."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _format_storage(java: str, lib: Path, run_dir: Path, progress: Progress) -> None:
    """KRaft refuses to start on unformatted storage; formatting writes meta.properties."""
    progress(f"Formatting new KRaft storage in {run_dir / 'data'}")
    cmd = [
        java,
        *_jvm_options(run_dir, "128m"),
        "-cp",
        f"{lib}/*",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        _random_cluster_id(),
        "-c",
        str(run_dir / "server.properties"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def _is_formatted(run_dir: Path) -> bool:
    """Formatted storage has meta.properties; reusing it is what keeps data across restarts."""
    return (run_dir / "data" / "meta.properties").exists()


# --------------------------------------------------------------------------- readiness


def _admin_timeouts() -> dict[str, int]:
    """Short client timeouts for probing; the option name differs across kafka-python versions."""
    from kafka import KafkaAdminClient

    known = KafkaAdminClient.DEFAULT_CONFIG
    options = {"request_timeout_ms": 5000, "bootstrap_timeout_ms": 3000, "api_version_auto_timeout_ms": 3000}
    return {key: value for key, value in options.items() if key in known}


def answers_metadata(bootstrap: str) -> bool:
    """Whether a broker at bootstrap answers a metadata request (what clients need first)."""
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False  # not listening yet: skip the client, which would log connection errors
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, **_admin_timeouts())
        try:
            admin.list_topics()
        finally:
            admin.close()
    except Exception:  # noqa: BLE001 - any client error just means "not ready yet"
        return False
    return True


def _log_tail(run_dir: Path, lines: int = 30) -> str:
    """End of the JVM output and the broker log, to show why a start failed."""
    parts = []
    for path in (run_dir / "broker.out", run_dir / "logs" / "server.log"):
        text = read_text(path)
        if text:
            parts.append(f"--- {path} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:]))
    return "\n".join(parts) or "(no broker output)"


def _wait_ready(handle: BrokerHandle, proc: subprocess.Popen | None, timeout: float) -> None:
    """Poll until the broker answers metadata; fail fast with its log if it dies."""
    deadline = time.monotonic() + timeout
    while not answers_metadata(handle.bootstrap):
        exited = proc.poll() is not None if proc is not None else not alive(handle.pid)
        if exited:
            raise BrokerError(f"the Kafka broker exited during start-up\n{_log_tail(handle.run_dir)}")
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the Kafka broker did not answer on {handle.bootstrap} within {timeout:.0f}s\n"
                + _log_tail(handle.run_dir)
            )
        time.sleep(0.5)


# --------------------------------------------------------------------------- public API


def status(run_dir: Path) -> BrokerHandle | None:
    """The handle of the broker running from run_dir, or None (stale pid files are ignored)."""
    run_dir = Path(run_dir).resolve()
    pid, port = read_int(run_dir / "broker.pid"), read_int(run_dir / "broker.port")
    if pid is None or port is None or not _is_our_broker(pid, run_dir):
        return None
    return BrokerHandle(f"{HOST}:{port}", pid, port, run_dir)


def start(
    run_dir: Path,
    port: int = 9092,
    controller_port: int | None = None,
    heap: str = DEFAULT_HEAP,
    progress: Progress = print,
) -> BrokerHandle:
    """Start (or find) the broker of run_dir and return once it answers metadata requests."""
    began = time.monotonic()
    run_dir = Path(run_dir).resolve()
    with file_lock(run_dir / "broker.lock"):
        running = status(run_dir)
        if running is not None:
            progress(f"Kafka broker already running on {running.bootstrap} (pid {running.pid}, run dir {run_dir})")
            _wait_ready(running, None, STARTUP_TIMEOUT_S)
            return running
        handle = _launch(run_dir, port, controller_port, heap, progress)
    progress(
        f"Kafka {kafka_version()} broker ready on {handle.bootstrap} (pid {handle.pid}, "
        f"run dir {run_dir}) in {time.monotonic() - began:.1f}s"
    )
    return handle


def _launch(run_dir: Path, port: int, controller_port: int | None, heap: str, progress: Progress) -> BrokerHandle:
    """Configure, format if new, spawn the detached JVM and wait for it (stopping it on failure)."""
    _clear_state(run_dir)
    controller_port = controller_port or _pick_controller_port(port)
    _check_port_free(port, "--port")
    _check_port_free(controller_port, "--controller-port")
    lib = ensure_jars(progress=progress)
    java = _require_java()
    (run_dir / "server.properties").write_text(_server_properties(run_dir, port, controller_port))
    if not _is_formatted(run_dir):
        _format_storage(java, lib, run_dir, progress)
    progress(f"Starting Kafka broker on {HOST}:{port} (controller {controller_port}, run dir {run_dir})")
    proc = _spawn(java, lib, run_dir, heap)
    handle = BrokerHandle(f"{HOST}:{port}", proc.pid, port, run_dir)
    _write_state(handle)
    try:
        _wait_ready(handle, proc, STARTUP_TIMEOUT_S)
    except BaseException:
        _terminate(proc.pid, 10.0)
        _clear_state(run_dir)
        raise
    return handle


def _spawn(java: str, lib: Path, run_dir: Path, heap: str) -> subprocess.Popen:
    """Run kafka.Kafka in its own session so it outlives the shell or test that started it."""
    cmd = [
        java,
        *_jvm_options(run_dir, heap),
        "-cp",
        f"{lib}/*",
        "kafka.Kafka",
        str(run_dir / "server.properties"),
    ]
    return spawn_detached(cmd, run_dir, "broker.out")


def stop(run_dir: Path, timeout: float = 30, crash: bool = False) -> bool:
    """Stop the broker of run_dir (data is kept); returns whether one was running.

    ``crash``: SIGKILL at once, as a power cut or an OOM kill would, instead of a clean shutdown.
    """
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        return False
    with file_lock(run_dir / "broker.lock"):
        handle = status(run_dir)
        if handle is not None:
            _terminate(handle.pid, 0 if crash else timeout)
        _clear_state(run_dir)
    return handle is not None


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    """``henvis broker start|stop|status`` options."""
    parser = argparse.ArgumentParser(prog="henvis broker", description="The local Kafka broker (KRaft, single node).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("start", "start the broker (or report the running one) and wait until it answers"),
        ("stop", "stop the broker; its data is kept for the next start"),
        ("status", "say whether the broker runs (exit code 3 when it does not)"),
        ("jars", "resolve the broker's jars from Maven Central into the cache (no start)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument(
            "--run-dir",
            type=Path,
            default=None,
            help="state folder (default: $HENVIS_RUN_DIR/kafka, else .run/kafka)",
        )
        if name == "start":
            cmd.add_argument("--port", type=int, default=9092, help="client port on 127.0.0.1 (default 9092)")
            cmd.add_argument(
                "--controller-port",
                type=int,
                default=None,
                help="KRaft controller port (default: port+1, else any free port)",
            )
            cmd.add_argument("--heap", default=DEFAULT_HEAP, help=f"JVM heap, e.g. 512m or 2g (default {DEFAULT_HEAP})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``henvis broker`` and ``python -m henvis_dev.broker``; returns the exit code."""
    args = _parser().parse_args(argv)
    run_dir = args.run_dir or default_run_dir()
    try:
        if args.command == "start":
            started = start(run_dir, port=args.port, controller_port=args.controller_port, heap=args.heap)
            print(f"bootstrap servers: {started.bootstrap}")
        elif args.command == "jars":
            print(f"Kafka {kafka_version()} jars in {ensure_jars()}")
        elif args.command == "stop":
            print("Kafka broker stopped" if stop(run_dir) else "Kafka broker was not running")
        else:
            handle = status(run_dir)
            print(
                f"Kafka broker running on {handle.bootstrap} (pid {handle.pid})"
                if handle
                else "Kafka broker not running"
            )
            return 0 if handle else 3
    except BrokerError as exc:
        print(f"henvis broker: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
