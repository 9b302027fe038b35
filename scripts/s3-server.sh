#!/usr/bin/env bash
# Makes an S3-compatible test server (s3s-fs) available and starts it in the
# background on 127.0.0.1. Idempotent: does nothing if the port is already
# listening.
#
# Environment:
#   S3_PORT      port to listen on                  (default 9100)
#   S3_DATA_DIR  directory holding buckets/objects  (default /tmp/crm-s3-data)
#   S3_PID_FILE  pid file                           (default $S3_DATA_DIR/../crm-s3.pid)
#   S3_LOG_FILE  server log                         (default $S3_DATA_DIR/../crm-s3.log)
#
# Credentials are fixed test values: access key `crmtest`,
# secret key `crmtest-secret-key` (scripts/test.sh passes the same ones to the tests).
set -euo pipefail

S3S_FS_VERSION=0.14.1
S3_HOST=127.0.0.1
S3_PORT="${S3_PORT:-9100}"
S3_DATA_DIR="${S3_DATA_DIR:-/tmp/crm-s3-data}"
S3_ACCESS_KEY_TEST=crmtest
S3_SECRET_KEY_TEST=crmtest-secret-key

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
# A fresh rustup install only puts ~/.cargo/bin on PATH for login shells.
case ":$PATH:" in
  *":$cargo_home/bin:"*) ;;
  *) [[ -d "$cargo_home/bin" ]] && PATH="$cargo_home/bin:$PATH" ;;
esac

die() { echo "s3-server: ERROR: $*" >&2; exit 1; }
log() { echo "s3-server: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$S3_HOST/$S3_PORT") 2>/dev/null; }

endpoint="http://$S3_HOST:$S3_PORT"

mkdir -p "$S3_DATA_DIR"
S3_DATA_DIR="$(cd "$S3_DATA_DIR" && pwd)"
state_dir="$(dirname "$S3_DATA_DIR")"
pid_file="${S3_PID_FILE:-$state_dir/crm-s3.pid}"
log_file="${S3_LOG_FILE:-$state_dir/crm-s3.log}"

if port_open; then
  # A server started by an earlier run from a directory since deleted (a
  # removed clone) still listens, but fails every signed request with 500:
  # replace it. Anything else listening there is taken as the test server.
  old_pid="$(cat "$pid_file" 2>/dev/null || true)"
  if [[ -n "$old_pid" && "$(readlink "/proc/$old_pid/cwd" 2>/dev/null)" == *" (deleted)" ]]; then
    log "the server on $S3_HOST:$S3_PORT (pid $old_pid) runs in a deleted directory; restarting it"
    kill "$old_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      port_open || break
      sleep 0.2
    done
    port_open && die "pid $old_pid still holds $S3_HOST:$S3_PORT after kill"
    rm -f "$pid_file"
  else
    log "something is already listening on $S3_HOST:$S3_PORT; assuming it is the test S3 server"
    echo "$endpoint"
    exit 0
  fi
fi

# --- make sure the binary exists ------------------------------------------
if ! command -v s3s-fs >/dev/null 2>&1; then
  command -v cargo >/dev/null 2>&1 \
    || die "s3s-fs is not installed and cargo is not on PATH (install Rust via rustup first)"
  log "installing s3s-fs $S3S_FS_VERSION with cargo (one-time, takes a few minutes)..."
  # Separate target dir so this never contends with the workspace's target dir.
  CARGO_TARGET_DIR="$cargo_home/s3s-fs-build" \
    nice -n 10 cargo install "s3s-fs@$S3S_FS_VERSION" --locked --features binary \
    || die "cargo install s3s-fs@$S3S_FS_VERSION failed"
  hash -r
  command -v s3s-fs >/dev/null 2>&1 || die "s3s-fs installed but not found on PATH ($cargo_home/bin)"
fi
s3s_fs="$(command -v s3s-fs)"

installed_version="$("$s3s_fs" --version 2>/dev/null | awk '{print $2}')" || true
if [[ "$installed_version" != "$S3S_FS_VERSION" ]]; then
  log "warning: $s3s_fs reports version '${installed_version:-unknown}', expected $S3S_FS_VERSION" \
      "(reinstall with: cargo install s3s-fs@$S3S_FS_VERSION --locked --features binary --force)"
fi

# --- start it ---------------------------------------------------------------
# From a directory that outlives any clone: the server keeps its working
# directory, and a deleted one makes it fail every request.
cd "$state_dir"

# A stale server from an earlier run that is alive but not listening on our
# port (e.g. different S3_PORT) is left alone; a dead pid file is just replaced.
if [[ -f "$pid_file" ]] && old_pid="$(cat "$pid_file")" && kill -0 "$old_pid" 2>/dev/null; then
  log "note: pid file $pid_file points at running process $old_pid which is not listening on $S3_PORT"
fi

cmd=("$s3s_fs" --host "$S3_HOST" --port "$S3_PORT"
     --access-key "$S3_ACCESS_KEY_TEST" --secret-key "$S3_SECRET_KEY_TEST"
     "$S3_DATA_DIR")
log "starting: ${cmd[*]}"
log "log file: $log_file"

# Detach from this shell (own session, no stdin) so it outlives the script.
setsid_cmd=()
command -v setsid >/dev/null 2>&1 && setsid_cmd=(setsid)
RUST_LOG="${S3_RUST_LOG:-info}" nohup "${setsid_cmd[@]}" "${cmd[@]}" \
  </dev/null >>"$log_file" 2>&1 &
pid=$!
echo "$pid" >"$pid_file"

for _ in $(seq 1 60); do
  if port_open; then
    log "s3s-fs (pid $pid) is listening; stop it with: kill \$(cat $pid_file)"
    echo "$endpoint"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 20 "$log_file" >&2 || true
    rm -f "$pid_file"
    die "s3s-fs exited before listening on $S3_HOST:$S3_PORT (see $log_file)"
  fi
  sleep 0.5
done

tail -n 20 "$log_file" >&2 || true
die "s3s-fs (pid $pid) did not accept connections on $S3_HOST:$S3_PORT within 30 s (see $log_file)"
