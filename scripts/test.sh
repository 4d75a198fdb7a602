#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests
# need (CometBFT v0.38.25 into .tools/, via `go install`), then the Rust
# workspace's tests (unit, in-process ABCI, and end-to-end on real devnets)
# and the JavaScript protocol client's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-cometbft.sh

echo "== cargo test (workspace)"
cargo test --workspace --locked

echo "== node --test (clients/js)"
(cd clients/js && node --test test/)
