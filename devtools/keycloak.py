"""A local Keycloak (the identity provider) for the tests and the demo, started like the broker.

The distribution comes from Maven Central (``org.keycloak:keycloak-quarkus-dist``, fetched
once with Maven), is unpacked and pre-built (``kc.sh build``: an H2 file database and a
local cache, no cluster) into a per-version cache, and runs as a detached JVM on loopback
whose whole state lives in one run folder::

    ~/.cache/henvis/keycloak/<version>/keycloak-<version>/   the built distribution
    ~/.cache/henvis/keycloak/<version>/seed-<realm digest>/  a database with the realm imported
    <run dir>/bin, lib, conf, providers, themes               links into the distribution
    <run dir>/data/import/henvis-realm.json                   the realm (tools/keycloak/)
    <run dir>/data/h2/                                        this instance's database
    <run dir>/keycloak.pid, keycloak.port, keycloak.out       its pid, port and output

The run folder is Keycloak's home (``kc.home.dir``), so parallel instances never share a
database. The first start on a new realm file imports it into a fresh database (the cold
start), then stops once to keep that database as the seed; every later run folder starts
from a copy of the seed, skipping the schema creation and the import (the warm start).

Keycloak needs Java 21 or newer: ``find_java`` looks at ``HENVIS_KEYCLOAK_JAVA``,
``JAVA_HOME``, ``java`` on PATH and every JDK under /usr/lib/jvm (``.ci/run`` installs one
when there is none).

Command line: ``henvis keycloak start|stop|status|dist|java`` or ``python -m henvis_dev.keycloak``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from henvis_dev.keycloak_realm import REALM, REALM_FILE
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
HELP = "start, stop or inspect the project's local Keycloak (identity provider)"

VERSION = "26.7.3"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{VERSION}:tar.gz"
HOST = "127.0.0.1"
MIN_JAVA = 21
DEFAULT_PORT = 8180
STARTUP_TIMEOUT_S = 300.0
# Build-time options: changing them re-runs `kc.sh build` (the marker holds them).
BUILD_OPTIONS = ("--db=dev-file", "--cache=local")
MARKER = ".henvis-built"
LINKED = ("bin", "lib", "conf", "providers", "themes")

Progress = Callable[[str], object]


class KeycloakError(RuntimeError):
    """A Keycloak operation failed; the message says what to do about it."""


@dataclass(frozen=True)
class KeycloakHandle:
    """Where a running local Keycloak listens, and how long it took to answer."""

    base_url: str
    port: int
    pid: int
    run_dir: Path
    started_in_s: float | None = None
    warm: bool | None = None

    @property
    def issuer(self) -> str:
        """The ``henvis`` realm's issuer URL (what a token's ``iss`` says)."""
        return f"{self.base_url}/realms/{REALM}"


# --------------------------------------------------------------------------- paths


def default_run_dir() -> Path:
    """The demo's run folder, overridable with HENVIS_RUN_DIR so tests and demos stay apart."""
    return Path(os.environ.get("HENVIS_RUN_DIR", ".run")) / "keycloak"


def cache_dir() -> Path:
    """Per-version cache, so two Keycloak versions never mix."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "henvis" / "keycloak" / VERSION


def realm_digest() -> str:
    """Digest of the realm file: a seed database belongs to one realm file."""
    try:
        return hashlib.sha256(REALM_FILE.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        raise KeycloakError(f"{REALM_FILE} not found: the local Keycloak needs the henvis source tree") from None


# --------------------------------------------------------------------------- java


def java_major(java: str) -> int | None:
    """The major version of a ``java`` binary, None when it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(1\.)?(\d+)', out)
    return int(match.group(2)) if match else None


def _java_candidates() -> list[str]:
    found = [os.environ.get("HENVIS_KEYCLOAK_JAVA", "")]
    if os.environ.get("JAVA_HOME"):
        found.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    found.append(shutil.which("java") or "")
    found += sorted((str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java")), reverse=True)
    return [path for path in dict.fromkeys(found) if path and os.access(path, os.X_OK)]


def find_java() -> str:
    """A ``java`` of version 21 or newer; says what to install when there is none."""
    for java in _java_candidates():
        major = java_major(java)
        if major is not None and major >= MIN_JAVA:
            return java
    raise KeycloakError(
        f"no Java {MIN_JAVA}+ found (HENVIS_KEYCLOAK_JAVA, JAVA_HOME, PATH, /usr/lib/jvm): "
        f"Keycloak {VERSION} needs one; `bash .ci/run` installs it, or set HENVIS_KEYCLOAK_JAVA"
    )


# --------------------------------------------------------------------------- distribution


def _require_maven() -> str:
    mvn = find_maven()
    if mvn is None:
        raise KeycloakError(
            "`mvn` is not on PATH: Maven is needed once to download Keycloak "
            "(Debian/Ubuntu: `sudo apt-get install maven`)"
        )
    return mvn


def ensure_dist(java: str, progress: Progress = print) -> Path:
    """The built distribution's folder, fetching and building it only when the cache is cold."""
    home = cache_dir() / f"keycloak-{VERSION}"
    stamp = " ".join(BUILD_OPTIONS)
    if read_text(home / MARKER) == stamp:
        return home
    with file_lock(cache_dir() / ".dist.lock"):
        if read_text(home / MARKER) == stamp:  # another process built it meanwhile
            return home
        began = time.monotonic()
        if not (home / "bin" / "kc.sh").exists():
            _download_and_unpack(home, progress)
        progress(f"Building Keycloak {VERSION} ({stamp}) in {home} (once per version) ...")
        result = subprocess.run(
            [str(home / "bin" / "kc.sh"), "build", *BUILD_OPTIONS],
            env=os.environ | {"JAVA": java},
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise KeycloakError(f"`kc.sh build` failed:\n{(result.stdout + result.stderr)[-4000:]}")
        (home / MARKER).write_text(stamp)
        progress(f"Keycloak {VERSION} ready in {time.monotonic() - began:.1f}s")
    return home


def _download_and_unpack(home: Path, progress: Progress) -> None:
    """Maven fetches the tarball (into ~/.m2 as well); it is unpacked beside ``home`` and renamed."""
    download = home.parent / "download"
    shutil.rmtree(download, ignore_errors=True)
    progress(f"Fetching {ARTIFACT} from Maven Central (first run only) ...")
    cmd = [_require_maven(), "-B", "-q", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={download}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    tarballs = list(download.glob("*.tar.gz"))
    if result.returncode != 0 or not tarballs:
        raise KeycloakError(f"Maven could not fetch {ARTIFACT}:\n{(result.stdout + result.stderr)[-4000:]}")
    partial = home.parent / "unpack.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(tarballs[0]) as tar:
        tar.extractall(partial, filter="data")
    unpacked = partial / f"keycloak-{VERSION}"
    if not (unpacked / "bin" / "kc.sh").exists():
        raise KeycloakError(f"{tarballs[0].name} has no keycloak-{VERSION}/bin/kc.sh")
    shutil.rmtree(home, ignore_errors=True)
    unpacked.rename(home)
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(download, ignore_errors=True)


# --------------------------------------------------------------------------- run folder


def _prepare_run_dir(run_dir: Path, home: Path) -> bool:
    """Links to the distribution, the realm file and a database; True when it came from the seed."""
    for name in LINKED:
        link = run_dir / name
        if link.is_symlink() and link.resolve() != (home / name).resolve():
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(home / name)
    digest = realm_digest()
    data = run_dir / "data"
    if read_text(data / "realm.digest") != digest:
        shutil.rmtree(data, ignore_errors=True)  # a new realm file: import it afresh
    (data / "import").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REALM_FILE, data / "import" / REALM_FILE.name)
    (data / "realm.digest").write_text(digest)
    if (data / "h2").is_dir():
        return True  # a restart: this folder's own database
    seed = _seed_dir()
    if seed.is_dir():
        shutil.copytree(seed, data / "h2")
        return True
    return False


def _seed_dir() -> Path:
    return cache_dir() / f"seed-{realm_digest()}"


def _keep_seed(run_dir: Path) -> None:
    """Keep a stopped instance's fresh database as the seed of later run folders."""
    seed = _seed_dir()
    with file_lock(cache_dir() / ".seed.lock"):  # two cold starts at once: the first one's seed stays
        if seed.is_dir():
            return
        partial = seed.with_name(seed.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(run_dir / "data" / "h2", partial)
        partial.rename(seed)


# --------------------------------------------------------------------------- processes


def _jvm_command(java: str, home: Path, run_dir: Path, port: int) -> list[str]:
    """What ``kc.sh start --optimized`` runs, with the run folder as Keycloak's home."""
    return [
        java,
        "-Xms64m",
        "-Xmx512m",
        "-XX:MaxMetaspaceSize=256m",
        "-XX:+UseG1GC",
        "-XX:+ExitOnOutOfMemoryError",
        # C1 only: a test or demo server wants a fast start, not peak throughput.
        "-XX:TieredStopAtLevel=1",
        "-Dfile.encoding=UTF-8",
        "-Djava.security.egd=file:/dev/urandom",
        "--add-opens=java.base/java.util=ALL-UNNAMED",
        "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
        "--add-opens=java.base/java.security=ALL-UNNAMED",
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "--enable-native-access=ALL-UNNAMED",
        "-Duser.language=en",
        "-Duser.country=US",
        "-Djava.util.concurrent.ForkJoinPool.common.threadFactory="
        "io.quarkus.bootstrap.forkjoin.QuarkusForkJoinWorkerThreadFactory",
        f"-Dkc.home.dir={run_dir}",
        f"-Djboss.server.config.dir={home / 'conf'}",
        "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
        "-Dpicocli.disable.closures=true",
        "-cp",
        str(home / "lib" / "quarkus-run.jar"),
        "io.quarkus.bootstrap.runner.QuarkusEntryPoint",
        "start",
        "--optimized",
        "--http-enabled=true",
        f"--http-host={HOST}",
        f"--http-port={port}",
        # The issuer follows the URL a client used (127.0.0.1:<port>): no fixed hostname.
        "--hostname-strict=false",
        # One node: no cluster transport (JGroups would listen on every interface, port 7800).
        "--cache=local",
        "--import-realm",
        "--log-level=WARN",
    ]


def _spawn(java: str, home: Path, run_dir: Path, port: int) -> subprocess.Popen:
    """Run Keycloak in its own session so it outlives the shell or test that started it."""
    return spawn_detached(_jvm_command(java, home, run_dir, port), run_dir, "keycloak.out")


def _is_ours(pid: int, run_dir: Path) -> bool:
    """Guard against a recycled pid: the JVM must have this run folder as its home."""
    if not alive(pid):
        return False
    args = command_line(pid)
    if args is None:
        return True
    return f"-Dkc.home.dir={run_dir}".encode() in args


def _answers(base_url: str) -> bool:
    """Whether the realm's discovery document is served (503 while Keycloak still boots)."""
    try:
        with urllib.request.urlopen(f"{base_url}/realms/{REALM}/.well-known/openid-configuration", timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(handle: KeycloakHandle, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (read_text(handle.run_dir / "keycloak.out") or "")[-3000:]
            raise KeycloakError(f"Keycloak exited with code {proc.returncode}:\n{tail}")
        if _answers(handle.base_url):
            return
        time.sleep(0.25)
    raise KeycloakError(f"Keycloak did not answer within {timeout:.0f}s (see {handle.run_dir / 'keycloak.out'})")


# --------------------------------------------------------------------------- start / stop


def status(run_dir: Path) -> KeycloakHandle | None:
    """The Keycloak running on run_dir, or None."""
    run_dir = Path(run_dir).resolve()
    pid, port = read_int(run_dir / "keycloak.pid"), read_int(run_dir / "keycloak.port")
    if pid is None or port is None or not _is_ours(pid, run_dir):
        return None
    return KeycloakHandle(f"http://{HOST}:{port}", port, pid, run_dir)


def start(run_dir: Path, port: int = DEFAULT_PORT, progress: Progress = print) -> KeycloakHandle:
    """Start Keycloak on run_dir (or return the running one) and wait until the realm answers."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(run_dir / "keycloak.lock"):
        running = status(run_dir)
        if running is not None:
            return running
        java = find_java()
        home = ensure_dist(java, progress)
        began = time.monotonic()
        warm = _prepare_run_dir(run_dir, home)
        handle = _launch(java, home, run_dir, port)
        if not warm:
            # Keep the freshly imported database as the seed: stop cleanly, copy, start again.
            _stop_handle(handle)
            _keep_seed(run_dir)
            handle = _launch(java, home, run_dir, port)
        elapsed = time.monotonic() - began
        progress(f"Keycloak {VERSION} answered after {elapsed:.1f}s ({'warm' if warm else 'cold'} start)")
        return KeycloakHandle(handle.base_url, port, handle.pid, run_dir, elapsed, warm)


def _launch(java: str, home: Path, run_dir: Path, port: int) -> KeycloakHandle:
    proc = _spawn(java, home, run_dir, port)
    handle = KeycloakHandle(f"http://{HOST}:{port}", port, proc.pid, run_dir)
    write_state(run_dir, "keycloak", proc.pid, port)
    try:
        _wait_ready(handle, proc, STARTUP_TIMEOUT_S)
    except BaseException:
        _stop_handle(handle)
        raise
    return handle


def _stop_handle(handle: KeycloakHandle, timeout: float = 30) -> None:
    # SIGTERM first: Keycloak closes its database cleanly.
    if not terminate(handle.pid, timeout):
        raise KeycloakError(f"Keycloak pid {handle.pid} did not exit even after SIGKILL")
    clear_state(handle.run_dir, "keycloak")


def stop(run_dir: Path, timeout: float = 30) -> bool:
    """Stop the Keycloak of run_dir (its database is kept); returns whether one was running."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        return False
    with file_lock(run_dir / "keycloak.lock"):
        handle = status(run_dir)
        if handle is not None:
            _stop_handle(handle, timeout)
    return handle is not None


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="henvis keycloak", description="The local Keycloak (realm henvis).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("start", "start Keycloak (or report the running one) and wait until the realm answers"),
        ("stop", "stop Keycloak; its database is kept for the next start"),
        ("status", "say whether Keycloak runs (exit code 3 when it does not)"),
        ("dist", "fetch and build the distribution into the cache (no start)"),
        ("java", "print the Java 21+ Keycloak would run with (exit code 1 when there is none)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--run-dir", type=Path, default=None, help="state folder (default: $HENVIS_RUN_DIR/keycloak)")
        if name == "start":
            cmd.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``henvis keycloak`` and ``python -m henvis_dev.keycloak``; returns the exit code."""
    args = _parser().parse_args(argv)
    run_dir = args.run_dir or default_run_dir()
    try:
        if args.command == "start":
            print(f"issuer: {start(run_dir, port=args.port).issuer}")
        elif args.command == "java":
            print(find_java())
        elif args.command == "dist":
            print(f"Keycloak {VERSION} built in {ensure_dist(find_java())}")
        elif args.command == "stop":
            print("Keycloak stopped" if stop(run_dir) else "Keycloak was not running")
        else:
            running = status(run_dir)
            print(
                f"Keycloak running, issuer {running.issuer} (pid {running.pid})" if running else "Keycloak not running"
            )
            return 0 if running else 3
    except KeycloakError as exc:
        print(f"henvis keycloak: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
