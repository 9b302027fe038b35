#!/usr/bin/env bash
# Property-based API testing of the served OpenAPI document with schemathesis:
# every operation, all checks, with a valid token. Exits non-zero on any
# server error or any response that breaks the spec.
#
#   tests/schemathesis.sh                      # build, start, sign up, run
#   MAX_EXAMPLES=200 tests/schemathesis.sh     # a longer run
#   CRM_BIN=target/release/crm tests/schemathesis.sh
#
# Needs Python >= 3.10 and PyPI (first run only: schemathesis is installed
# into a venv under ~/.cache). Starts its own embedded-mode server on a free
# port with a fresh data directory, and stops it at the end. Settings that
# the spec cannot express (opaque cursors and consistency tokens, semantic
# 412s, uploads judged by their bytes) are in tests/schemathesis.toml, each
# with its reason. Results and history: RELIABILITY.md ("Hostile input").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
VENV="${SCHEMATHESIS_VENV:-$HOME/.cache/crm-schemathesis}"
MAX_EXAMPLES="${MAX_EXAMPLES:-50}"
SEED="${SEED:-20261125}"
WORKERS="${WORKERS:-2}"
REPORT_DIR="${REPORT_DIR:-${TMPDIR:-/tmp}/crm-schemathesis-report}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# A Python that schemathesis supports, 3.12+ preferred: under load, 3.11.7's
# ast module crashed inside hypothesis ("AST constructor recursion depth
# mismatch"). pyenv shims of versions that are not active exist but fail,
# so each candidate is run before it is chosen.
pick_python() {
    local candidate
    for candidate in python3.13 python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python3 \
        "$HOME"/.pyenv/versions/3.12*/bin/python3 python3; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
    if python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
        echo python3
        return
    fi
    echo "schemathesis needs Python 3.10 or newer" >&2
    exit 2
}

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    PYTHON="${PYTHON:-$(pick_python)}"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ -z "${CRM_BIN:-}" ]; then
    cargo build --locked --quiet
    CRM_BIN="$CARGO_TARGET_DIR/debug/crm"
fi

LOGS="$(mktemp -d "${TMPDIR:-/tmp}/crm-schemathesis.XXXXXX")"
LOG="$LOGS/server.log"
# shellcheck source=scripts/embedded-crm.sh
. "$ROOT/scripts/embedded-crm.sh"
start_embedded_crm "$CRM_BIN" "$LOG" "${RUST_LOG:-warn}"
BASE="$CRM_BASE"
PORT="${BASE##*:}"
trap 'stop_embedded_crm; rm -rf "$LOGS"' EXIT

# A fresh company and its admin for each phase: generated requests may
# legitimately revoke the token they carry (demote its user once another
# admin exists, change its password), which would leave the rest of a phase
# testing only the 401 path.
signup() {
    curl -fsS -X POST "$BASE/v1/signup" -H 'content-type: application/json' \
        -d "{\"company_name\":\"Schemathesis $1\",\"name\":\"Fuzz\",\"email\":\"fuzz-$1-$PORT@example.com\",\"password\":\"correct horse battery\"}" \
        | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# Runs: phases, a name, and the operations they cover (or checks left out).
# The stateful run leaves out negative_data_rejection: when it follows a link
# into the photo upload it sends a real image for a body it generated as
# invalid (an empty `file`), then reports the 201 as invalid data accepted;
# the fuzzing runs check invalid data for every operation. Fuzzing the routes
# that change a user (its password, role, removal) apart from the others:
# they end the token they run with, so they go last, with their own.
RUNS=(
    "examples,coverage|all|"
    "fuzzing|all-but-user-changes|--exclude-path-regex=^/v1/users/\\{id\\}"
    "fuzzing|user-changes|--include-path-regex=^/v1/users/\\{id\\}"
    "stateful|all|--exclude-checks=negative_data_rejection"
)
STATUS=0
for RUN in "${RUNS[@]}"; do
    IFS='|' read -r PHASE NAME FILTER <<<"$RUN"
    echo "=== schemathesis $SCHEMATHESIS_VERSION: phases $PHASE, $NAME, $MAX_EXAMPLES examples per operation, seed $SEED"
    TOKEN="$(signup "${PHASE//,/-}-$NAME")"
    set +e
    # shellcheck disable=SC2086 # FILTER is one optional argument or none
    "$VENV/bin/schemathesis" --config-file "$ROOT/tests/schemathesis.toml" run "$BASE/openapi.json" \
        --header "Authorization: Bearer $TOKEN" \
        --phases "$PHASE" $FILTER \
        --checks all \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$SEED" \
        --workers "$WORKERS" \
        --report junit,ndjson --report-dir "$REPORT_DIR/${PHASE//,/-}-$NAME" \
        "$@"
    RUN_STATUS=$?
    set -e
    [ "$RUN_STATUS" -eq 0 ] || STATUS=$RUN_STATUS
done
if grep -q "panicked" "$LOG"; then
    echo "the server panicked during the run:" >&2
    grep -A5 "panicked" "$LOG" >&2
    STATUS=1
fi
exit "$STATUS"
