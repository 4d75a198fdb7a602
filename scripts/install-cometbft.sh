#!/usr/bin/env bash
# Installs the pinned CometBFT (v0.38.25) into .tools/bin unless it is there
# already. The Rust launcher does the same on demand; doing it up front keeps
# test output readable and fails early with a clear message.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v0.38.25
bin=.tools/bin/cometbft
if [ -x "$bin" ] && [ "$("$bin" version 2>/dev/null)" = "${version#v}" ]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is needed to install CometBFT $version (go install), and it is not on PATH" >&2
  exit 1
fi
echo "installing CometBFT $version into .tools/bin (go install) ..."
GOBIN="$PWD/.tools/bin" go install "github.com/cometbft/cometbft/cmd/cometbft@$version"
"$bin" version
