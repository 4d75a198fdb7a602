#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests
# need (CometBFT v0.38.25 into .tools/ via `go install`; Debian's Chromium and
# playwright-core for the browser test), then the Rust workspace's tests (unit,
# in-process ABCI and API, end-to-end on real devnets, the CLI and the demo,
# the benchmark's quick mode), the JavaScript protocol client's tests, and the
# dashboard's test in a real headless browser.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-cometbft.sh

echo "== cargo test (workspace)"
cargo test --workspace --locked

echo "== node --test (clients/js)"
(cd clients/js && node --test test/)

echo "== browser test (tests/browser)"
TANDEM_BIN="$PWD/target/debug/tandem" tests/browser/run.sh
