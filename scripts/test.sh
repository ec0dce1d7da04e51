#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh), then unit tests
# and every notebook headless in the smoke profile.
# Options: --no-setup (skip installation; what `npm test` does)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--no-setup" ] || bash scripts/setup.sh
npm run --silent build
echo "==> unit tests"
node --test --test-concurrency=1 dist/tests/
echo "==> notebooks (smoke profile)"
rm -rf runs/test-notebooks
bash scripts/run-notebooks.sh --profile smoke --out runs/test-notebooks
