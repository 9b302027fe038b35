# Sourced by the scripts that test a running server (tests/browser/run.sh,
# tests/clients/run.sh, tests/schemathesis.sh): starts `crm serve` in
# embedded mode (SQLite and photo files in a fresh directory; no Postgres,
# NATS or S3, whatever the environment says) on a free loopback port, and
# stops it and removes the directory when the script exits.
#
#   start_embedded_crm BINARY LOG [RUST_LOG]   # sets CRM_BASE, CRM_SERVER, CRM_DATA

start_embedded_crm() {
    local binary="$1" log="$2" filter="${3:-warn}" port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    CRM_BASE="http://127.0.0.1:$port"
    CRM_DATA="$(mktemp -d "${TMPDIR:-/tmp}/crm-embedded.XXXXXX")"
    env -u DATABASE_URL -u NATS_URL -u S3_ENDPOINT -u CRM_JWT_SECRET \
        CRM_ADDR="127.0.0.1:$port" CRM_DATA_DIR="$CRM_DATA" RUST_LOG="$filter" \
        "$binary" serve >"$log" 2>&1 &
    CRM_SERVER=$!
    trap stop_embedded_crm EXIT
    local _
    for _ in $(seq 1 120); do
        curl -fsS "$CRM_BASE/readyz" >/dev/null 2>&1 && return 0
        if ! kill -0 "$CRM_SERVER" 2>/dev/null; then
            cat "$log" >&2
            echo "crm serve exited at start" >&2
            return 1
        fi
        sleep 0.25
    done
    cat "$log" >&2
    echo "crm serve is not ready at $CRM_BASE" >&2
    return 1
}

stop_embedded_crm() {
    kill "$CRM_SERVER" 2>/dev/null || true
    wait "$CRM_SERVER" 2>/dev/null || true
    rm -rf "$CRM_DATA"
}
