#!/usr/bin/env bash
# run.sh (tests/browser): installs what the dashboard's browser test needs
# (Debian's Chromium via apt-get, playwright-core via npm; never a downloaded
# browser), builds the tandem binary unless TANDEM_BIN names one, and runs
# the test. The screenshot lands in tests/browser/artifacts/dashboard.png.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "installing chromium (apt-get)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

cd "$here"
# Playwright must not fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi

if [ -z "${TANDEM_BIN:-}" ]; then
  (cd "$repo" && cargo build --bin tandem)
  export TANDEM_BIN="$repo/target/debug/tandem"
fi

node --test --test-reporter=spec dashboard.test.mjs
