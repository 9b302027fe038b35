#!/usr/bin/env bash
# Runs the whole test suite against real local services.
#
#   scripts/test.sh                 # everything: cargo test, then the
#                                   # journey by generated clients and the
#                                   # console's journeys in a headless Chromium
#   scripts/test.sh -p api          # extra arguments go to `cargo test` (and
#   scripts/test.sh -- --nocapture  # then only cargo test runs)
#
# Starts PostgreSQL, NATS (JetStream, `sync_interval: always`, on
# ${NATS_PORT:-4223}) and an s3s-fs S3 server if needed (scripts/services.sh).
# Honours an existing CARGO_TARGET_DIR, S3_PORT, NATS_PORT and
# CRM_ALLOW_OLD_NATS (scripts/nats-server.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/services.sh"

# Tests create their own fresh databases from this URL.
export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
# The current nats-server that services.sh started (scripts/nats-server.sh),
# not the machine's Debian one on 4222.
export TEST_NATS_URL="nats://127.0.0.1:${NATS_PORT:-4223}"
export TEST_S3_ENDPOINT="http://127.0.0.1:${S3_PORT:-9100}"
export TEST_S3_ACCESS_KEY="crmtest"
export TEST_S3_SECRET_KEY="crmtest-secret-key"
# Make service-backed tests fail instead of silently skipping.
export CRM_REQUIRE_SERVICES=1

if [ "$#" -gt 0 ]; then
    exec cargo test --workspace --locked "$@"
fi
cargo test --workspace --locked
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# Clients generated from the served OpenAPI document (Python and
# TypeScript) run the console's journey, type-checked first.
"$ROOT/tests/clients/run.sh"
# The web console in a real browser (tests/browser/run.sh installs Debian's
# chromium and a pinned Selenium if needed), on the crm just built.
exec "$ROOT/tests/browser/run.sh"
