#!/usr/bin/env bash
# A throwaway local PostgreSQL for tests and the demo.
#
#   tools/postgres.sh start    install (apt) if needed, create the cluster once, start it,
#                              wait until it accepts connections; the admin URL is the last
#                              line on stdout (progress goes to stderr)
#   tools/postgres.sh stop     stop it (fast shutdown)
#   tools/postgres.sh status   say whether it runs, where its data is, and its URL
#   tools/postgres.sh url      print the admin URL only
#   tools/postgres.sh reset    stop it and delete its data directory
#
# Environment:
#   HENVIS_RUN_DIR   where run-time state lives (default: <repo>/.run); the cluster is
#                    ${HENVIS_RUN_DIR}/postgres
#   HENVIS_PG_PORT   TCP port on 127.0.0.1 (default 54329)
#
# The server listens on 127.0.0.1 only (no Unix socket), trusts every local connection
# (no passwords: test use only) and runs with fsync=off. PostgreSQL refuses to run as
# root, so when this script runs as root the cluster belongs to the `postgres` OS user.
# If that user cannot reach the run dir (e.g. a checkout under /root), the cluster lives
# in /tmp/henvis-postgres-<uid>-<port> instead; `status` shows which.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${HENVIS_PG_PORT:-54329}"
HOST=127.0.0.1
if [[ -n "${HENVIS_RUN_DIR:-}" ]]; then
    RUN_DIR="$(realpath -m -- "${HENVIS_RUN_DIR}")"
else
    RUN_DIR="${REPO_ROOT}/.run"
fi
START_TIMEOUT="${HENVIS_PG_START_TIMEOUT:-60}"

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

admin_url() { echo "postgresql+psycopg://postgres@${HOST}:${PORT}/postgres"; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as the user that owns the cluster, from a directory that user can read.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

pg_bin_dir() {
    local found
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | while read -r d; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/pg_isready" ]] && echo "$d"
    done | tail -n 1)" || true
    echo "${found}"
}

ensure_installed() {
    PG_BIN="$(pg_bin_dir)"
    if [[ -z "${PG_BIN}" ]]; then
        log "PostgreSQL server binaries not found under /usr/lib/postgresql: installing Debian's postgresql"
        local sudo=()
        is_root || sudo=(sudo)
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >&2
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
        PG_BIN="$(pg_bin_dir)"
        [[ -n "${PG_BIN}" ]] || die "apt-get installed postgresql but no /usr/lib/postgresql/<version>/bin/initdb exists"
    fi
    if is_root && ! id -u postgres >/dev/null 2>&1; then
        log "creating the postgres OS user"
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

# Pick the data directory: ${RUN_DIR}/postgres when the cluster owner can reach it,
# /tmp/henvis-postgres-<uid>-<port> otherwise. Deterministic, so stop/status find it again.
resolve_data_dir() {
    local create="${1:-no}"
    if [[ "${create}" == yes ]]; then
        mkdir -p -- "${RUN_DIR}"
    fi
    # The deepest existing ancestor is what decides (a missing run dir will be created 0755).
    local probe="${RUN_DIR}"
    while [[ ! -e "${probe}" && "${probe}" != / ]]; do probe="$(dirname -- "${probe}")"; done
    if ! is_root || runuser -u postgres -- test -x "${probe}" 2>/dev/null; then
        DATA_DIR="${RUN_DIR}/postgres"
        DATA_FALLBACK=no
    else
        DATA_DIR="/tmp/henvis-postgres-$(id -u)-${PORT}"
        DATA_FALLBACK=yes
    fi
}

accepting() { "${PG_BIN}/pg_isready" -q -h "${HOST}" -p "${PORT}" -d postgres -U postgres -t 2; }

cluster_running() {
    [[ -f "${DATA_DIR}/PG_VERSION" ]] && as_pg "${PG_BIN}/pg_ctl" status -D "${DATA_DIR}" >/dev/null 2>&1
}

init_cluster() {
    local major
    major="$(basename "$(dirname "${PG_BIN}")")"
    if [[ -f "${DATA_DIR}/PG_VERSION" ]]; then
        local have
        have="$(cat "${DATA_DIR}/PG_VERSION")"
        [[ "${have}" == "${major}" ]] || die "${DATA_DIR} holds a PostgreSQL ${have} cluster but the server is ${major}: run '$0 reset'"
        return
    fi
    if [[ "${DATA_FALLBACK}" == yes ]]; then
        log "the postgres user cannot reach ${RUN_DIR}; using ${DATA_DIR} for the cluster"
    fi
    log "creating a PostgreSQL ${major} cluster in ${DATA_DIR}"
    mkdir -p -- "${DATA_DIR}"
    if is_root; then
        chown postgres:postgres "${DATA_DIR}"
    fi
    chmod 700 "${DATA_DIR}"
    as_pg "${PG_BIN}/initdb" -D "${DATA_DIR}" -U postgres --auth=trust -E UTF8 --no-locale --no-sync >"${DATA_DIR}.initdb.log" 2>&1 \
        || { cat "${DATA_DIR}.initdb.log" >&2; rm -rf -- "${DATA_DIR}"; die "initdb failed"; }
    rm -f -- "${DATA_DIR}.initdb.log"
    # Settings for a disposable test server; the port is given at start so it can change.
    as_pg tee -a "${DATA_DIR}/postgresql.conf" >/dev/null <<'EOF'

# --- henvis test cluster (tools/postgres.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

cmd_start() {
    ensure_installed
    resolve_data_dir yes
    if cluster_running; then
        if accepting; then
            log "already running (data ${DATA_DIR}, port ${PORT})"
            admin_url
            return
        fi
    elif accepting; then
        log "warning: something already accepts connections on ${HOST}:${PORT} that is not the cluster in ${DATA_DIR}; using it"
        admin_url
        return
    else
        init_cluster
        log "starting PostgreSQL on ${HOST}:${PORT} (data ${DATA_DIR}, log ${DATA_DIR}/server.log)"
        # -W: do not let pg_ctl wait; we wait below on pg_isready, the real condition.
        as_pg "${PG_BIN}/pg_ctl" start -W -D "${DATA_DIR}" -l "${DATA_DIR}/server.log" -o "-p ${PORT}" >&2 \
            || { tail -n 30 "${DATA_DIR}/server.log" >&2 || true; die "pg_ctl start failed"; }
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    # pg_ctl -W returns before the postmaster has written its pid file, so "not running"
    # only means "exited" once it had a few seconds to get there.
    local grace=$((SECONDS + 5))
    until accepting; do
        if ((SECONDS >= grace)) && ! cluster_running; then
            tail -n 30 "${DATA_DIR}/server.log" >&2 || true
            die "PostgreSQL exited during start-up (see ${DATA_DIR}/server.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "${DATA_DIR}/server.log" >&2 || true
            die "PostgreSQL did not accept connections on ${HOST}:${PORT} within ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    log "ready"
    admin_url
}

cmd_stop() {
    ensure_installed
    resolve_data_dir no
    if cluster_running; then
        as_pg "${PG_BIN}/pg_ctl" stop -D "${DATA_DIR}" -m fast -w -t "${START_TIMEOUT}" >&2
        log "stopped (data ${DATA_DIR})"
    else
        log "not running (data ${DATA_DIR})"
    fi
}

cmd_status() {
    ensure_installed
    resolve_data_dir no
    if cluster_running && accepting; then
        echo "running: ${HOST}:${PORT}, data ${DATA_DIR}"
        admin_url
    elif cluster_running; then
        echo "starting or stuck: the server process exists but does not accept connections on ${HOST}:${PORT} (data ${DATA_DIR})"
        return 1
    elif accepting; then
        echo "not running from ${DATA_DIR}, but another server accepts connections on ${HOST}:${PORT}"
        admin_url
    elif [[ -f "${DATA_DIR}/PG_VERSION" ]]; then
        echo "stopped (data ${DATA_DIR})"
        return 3
    else
        echo "not created (would be ${DATA_DIR})"
        return 3
    fi
}

cmd_reset() {
    cmd_stop
    if [[ -d "${DATA_DIR}" ]]; then
        rm -rf -- "${DATA_DIR}"
        log "deleted ${DATA_DIR}"
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) admin_url ;;
    reset) cmd_reset ;;
    *)
        echo "usage: $0 {start|stop|status|url|reset}" >&2
        exit 2
        ;;
esac
