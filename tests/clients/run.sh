#!/usr/bin/env bash
# Generated clients against the running server: the console's journey
# through a Python client made by openapi-python-client and a TypeScript one
# made by openapi-typescript (+ openapi-fetch), both generated from the
# document the server serves at /openapi.json. Each journey is type-checked
# first (mypy --strict --disallow-any-expr; tsc --strict with a check that
# rejects `unknown` and `any`), then run.
#
#   tests/clients/run.sh
#   CRM_BIN=target/release/crm tests/clients/run.sh
#
# Needs Python >= 3.10, Node >= 18 and the PyPI and npm registries (first run
# only: the pinned tools go to ~/.cache). Starts its own embedded-mode server
# on a free port with a fresh data directory, and stops it at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/clients"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

PY_TOOLS="openapi-python-client==0.29.1 mypy==2.4.1 httpx==0.28.1 attrs==26.1.0 python-dateutil==4.0.0"
TS_TOOLS="openapi-typescript@7.13.0 openapi-fetch@0.17.0 typescript@5.9.3 @types/node@20.19.43"
PY_VENV="${CLIENTS_PY_VENV:-$HOME/.cache/crm-clients-py}"
TS_DIR="${CLIENTS_TS_DIR:-$HOME/.cache/crm-clients-ts}"

if ! command -v npm >/dev/null; then
    echo "clients: installing Node.js and npm (Debian)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if ! [ -f "$PY_VENV/.installed" ] || [ "$(cat "$PY_VENV/.installed")" != "$PY_TOOLS" ]; then
    python3 -m venv "$PY_VENV"
    # shellcheck disable=SC2086 # the list is word-split on purpose
    "$PY_VENV/bin/pip" install --quiet --disable-pip-version-check $PY_TOOLS
    echo "$PY_TOOLS" >"$PY_VENV/.installed"
fi
if ! [ -f "$TS_DIR/.installed" ] || [ "$(cat "$TS_DIR/.installed")" != "$TS_TOOLS" ]; then
    mkdir -p "$TS_DIR"
    (cd "$TS_DIR" && echo '{"private": true, "type": "module"}' >package.json &&
        # shellcheck disable=SC2086
        npm install --silent --no-audit --no-fund $TS_TOOLS)
    echo "$TS_TOOLS" >"$TS_DIR/.installed"
fi

if [ -z "${CRM_BIN:-}" ]; then
    cargo build --locked --quiet --bin crm
    CRM_BIN="$CARGO_TARGET_DIR/debug/crm"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/crm-clients.XXXXXX")"
# shellcheck source=scripts/embedded-crm.sh
. "$ROOT/scripts/embedded-crm.sh"
start_embedded_crm "$CRM_BIN" "$WORK/server.log" "${RUST_LOG:-warn}"
BASE="$CRM_BASE"
trap 'stop_embedded_crm; rm -rf "$WORK"' EXIT
curl -fsS "$BASE/openapi.json" -o "$WORK/openapi.json"

echo "clients: Python (openapi-python-client)"
"$PY_VENV/bin/openapi-python-client" generate --path "$WORK/openapi.json" --meta none \
    --config "$HERE/python-client.yaml" --output-path "$WORK/py/crm_client" >"$WORK/generate.log" 2>&1 ||
    { cat "$WORK/generate.log"; exit 1; }
if grep -q "^WARNING" "$WORK/generate.log"; then
    cat "$WORK/generate.log"
    echo "clients: the Python generator left parts of the document out" >&2
    exit 1
fi
(cd "$WORK/py" && MYPYPATH="$WORK/py" "$PY_VENV/bin/mypy" --config-file "$HERE/mypy.ini" \
    --cache-dir "$WORK/mypy-cache" "$HERE/journey.py")
PYTHONPATH="$WORK/py" "$PY_VENV/bin/python" "$HERE/journey.py" "$BASE"

echo "clients: TypeScript (openapi-typescript, openapi-fetch)"
mkdir -p "$WORK/ts"
cp "$HERE/journey.ts" "$HERE/tsconfig.json" "$HERE/generate.mjs" "$WORK/ts/"
ln -s "$TS_DIR/node_modules" "$WORK/ts/node_modules"
echo '{"private": true, "type": "module"}' >"$WORK/ts/package.json"
(cd "$WORK/ts" && node generate.mjs "$WORK/openapi.json" schema.d.ts)
# The checker must refuse an `unknown` and an `any`, or it proves nothing.
printf 'const u: unknown = 1;\ntyped(u);\nconst a: any = 1;\ntyped(a);\n' |
    cat "$WORK/ts/journey.ts" - >"$WORK/ts/probe.ts"
sed 's/"journey.ts"/"probe.ts"/' "$WORK/ts/tsconfig.json" >"$WORK/ts/probe.json"
if (cd "$WORK/ts" && "$TS_DIR/node_modules/.bin/tsc" -p probe.json --noEmit >"$WORK/probe.log" 2>&1); then
    echo "clients: the type check accepted unknown or any" >&2
    exit 1
fi
[ "$(grep -c "not assignable to parameter of type 'never'" "$WORK/probe.log")" = 2 ] ||
    { cat "$WORK/probe.log"; exit 1; }
(cd "$WORK/ts" && "$TS_DIR/node_modules/.bin/tsc" -p tsconfig.json)
node "$WORK/ts/out/journey.js" "$BASE"
