#!/usr/bin/env bash
# Installs Meta's Python and Node business SDKs for tests/sim_sdk.rs.
# Idempotent: the venv and node_modules are reused when present and only
# brought up to date. Both live in tests/sdk and are gitignored.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -c 'import facebook_business; print("python sdk", facebook_business.__version__ if hasattr(facebook_business, "__version__") else "installed")'

npm install --no-audit --no-fund --loglevel=error
node -e 'console.log("node sdk", require("facebook-nodejs-business-sdk/package.json").version)'
