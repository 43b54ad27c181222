#!/usr/bin/env bash
# Runs every test of capig: installs what the tests need (Meta's Python and Node business
# SDKs, used as real clients of the CAPI simulator; playwright-core for the browser
# tests), runs the web client's unit tests (node's test runner), the end-to-end tests in
# Chromium against `capig demo`, each criterion bench once as a smoke test, then every
# unit and integration test of the workspace. `.ci/run` calls this (and installs
# Chromium and node when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/sdk/install.sh
(cd web-client && npm install --no-audit --no-fund --loglevel=error)
node --test web-client/test/
cargo build --bin capig
CAPIG_BIN="${CARGO_TARGET_DIR:-target}/debug/capig" node --test web-client/e2e/
cargo test -p capig-bench --bench transform --bench deliver
cargo test --workspace --lib --bins --tests "$@"
