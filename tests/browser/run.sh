#!/usr/bin/env bash
# run.sh - what ctest's browser_dashboard runs: makes sure node_modules holds
# package-lock.json's playwright-core (npm ci only when the lock changed, so
# a second run works offline), then runs dashboard.test.mjs, or the spec
# named as its argument (mqtt.test.mjs).
# Exit 77 (skipped) only when Debian's Chromium is missing and
# PHANTOM_ALLOW_SKIP=1; anything else missing is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

chromium=${PHANTOM_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    if [ "${PHANTOM_ALLOW_SKIP:-}" = 1 ]; then
        echo "SKIP: no $chromium (apt-get install chromium)"
        exit 77
    fi
    echo "FAIL: no $chromium (apt-get install chromium, or set PHANTOM_ALLOW_SKIP=1 to skip)" >&2
    exit 1
fi
command -v node >/dev/null || { echo "FAIL: node not found (apt-get install nodejs npm)" >&2; exit 1; }

# The lock's hash, recorded after the last successful npm ci (as web/npm_ci.cmake does).
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
marker=node_modules/.phantomwatch-lock-sha256
if [ "$(cat "$marker" 2>/dev/null || true)" != "$lock" ]; then
    command -v npm >/dev/null || { echo "FAIL: npm not found (apt-get install npm)" >&2; exit 1; }
    echo "npm ci (package-lock.json changed or node_modules missing)"
    npm ci --no-audit --no-fund --ignore-scripts
    echo "$lock" >"$marker"
fi

exec node "${1:-dashboard.test.mjs}"
