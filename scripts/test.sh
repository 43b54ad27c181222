#!/usr/bin/env bash
# Runs every test of capig: installs what the tests need (Meta's Python and Node business
# SDKs for the simulator tests), then the whole cargo workspace. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/sdk/install.sh
cargo test --workspace --all-targets "$@"
