#!/usr/bin/env bash
# The main job: set everything up, then run the whole curriculum (every notebook, in
# order) on the embedded default dataset and print the report folder.
# ORDERHEAD_PROFILE=smoke|default|full chooses the profile (default: default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/run-notebooks.sh --profile "${ORDERHEAD_PROFILE:-default}" "$@"
