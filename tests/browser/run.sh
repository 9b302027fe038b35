#!/usr/bin/env bash
# The web console's journeys in a real headless Chromium (Debian's chromium
# and chromium-driver, driven by Selenium for Python): builds `crm`, serves
# it in embedded mode on a free port with a fresh data directory, runs
# tests/browser/journey.py, and keeps a screenshot of each page in
# ${CRM_BROWSER_ARTIFACTS:-${TMPDIR:-/tmp}/crm-browser-artifacts}.
#   --readme-screenshot   also copy the customers page to docs/console.png
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/browser"
ARTIFACTS="${CRM_BROWSER_ARTIFACTS:-${TMPDIR:-/tmp}/crm-browser-artifacts}"
VENV="${CRM_BROWSER_VENV:-$HOME/.cache/crm-browser-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crm-target}"
log() { echo "browser: $*" >&2; }

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing chromium and chromium-driver"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# The venv is reused while it holds the pinned packages.
if ! "$VENV/bin/python" -c 'import selenium, sys; sys.exit(selenium.__version__ != "4.51.0")' 2>/dev/null; then
  log "installing selenium in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
fi

cd "$ROOT"
cargo build --locked --bin crm
CRM="$CARGO_TARGET_DIR/debug/crm"

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
# Embedded mode: SQLite and photo files in a fresh directory, no NATS, no S3.
# shellcheck source=scripts/embedded-crm.sh
. "$ROOT/scripts/embedded-crm.sh"
start_embedded_crm "$CRM" "$ARTIFACTS/crm.log" info,sqlx=warn
BASE="$CRM_BASE"
# The start-up log names the console's address.
grep -q "web console: $BASE/app" "$ARTIFACTS/crm.log" || { cat "$ARTIFACTS/crm.log" >&2; log "no console URL logged"; exit 1; }

status=0
"$VENV/bin/python" "$HERE/journey.py" "$BASE" "$ARTIFACTS" || status=$?
log "screenshots and server log: $ARTIFACTS"
if [[ $status -ne 0 ]]; then
  tail -n 30 "$ARTIFACTS/crm.log" >&2
  exit "$status"
fi
if [[ "${1:-}" == "--readme-screenshot" ]]; then
  cp "$ARTIFACTS/console.png" "$ROOT/docs/console.png"
  log "updated docs/console.png"
fi
