#!/usr/bin/env bash
# The main job: set everything up, then run the whole curriculum (every notebook, in
# order) on the embedded default dataset and print the report folder.
# ORDERHEAD_PROFILE=smoke|default|full chooses the profile (default: default).
# ORDERHEAD_DATA or --data fashion-mnist|subset|idx:DIR chooses the dataset (default: the
# profile's own, fashion-mnist for default and full; README, Data).
# Resumable: rerun after a kill and it continues the newest unfinished report of that
# profile and dataset, skipping the notebooks done; --fresh starts a new report.
# Other options (--data, --out, --only) go to run-notebooks.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/run-notebooks.sh --profile "${ORDERHEAD_PROFILE:-default}" "$@"
