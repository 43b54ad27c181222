#!/usr/bin/env bash
# Runs every test of capig: installs what the tests need (Meta's Python and Node business
# SDKs, used as real clients of the CAPI simulator), runs the web client's unit tests
# (node's test runner), each criterion bench once as a smoke test, then every unit and
# integration test of the workspace. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/sdk/install.sh
node --test web-client/test/
cargo test -p capig-bench --bench transform --bench deliver
cargo test --workspace --lib --bins --tests "$@"
