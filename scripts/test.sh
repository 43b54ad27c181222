#!/usr/bin/env bash
# Runs every test of capig: installs what the tests need (Meta's Python and Node business
# SDKs, used as real clients of the CAPI simulator; playwright-core for the browser
# tests), runs the web client's unit tests (node's test runner), the end-to-end tests in
# Chromium against `capig demo`, each criterion bench once as a smoke test, a check of
# the benchmark report against its numbers, then every
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
# The comparison harness is a long root-only run (bench/compare); here: it compiles, and
# the committed report is exactly what report.py makes of the committed numbers.
python3 -m py_compile bench/compare bench/report.py
report_dir=$(mktemp -d)
python3 bench/report.py bench/report.json "$report_dir/REPORT.md" --no-chart
diff -u bench/REPORT.md "$report_dir/REPORT.md"
rm -rf "$report_dir"
cargo test --workspace --lib --bins --tests "$@"
