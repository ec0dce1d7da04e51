#!/usr/bin/env bash
# The crossover study (docs/METHOD.md §6.9, lib/study): the generator's unique training images K and its
# compute N swept, four Stage 1 arms per cell (K, N, seed), to find where block-RAR overtakes raster-only.
# Usage: scripts/study.sh [--profile smoke|default|full] [--data D] [--shards N] [--no-build]
#
# 1. builds the library (--no-build: use the dist/ there is);
# 2. finds the newest report of the profile and dataset under reports/ (finished or not) whose runs hold
#    notebook 01's token cache; with none, runs notebooks 00-01 first (scripts/run-notebooks.sh --only,
#    a new report that a later `bash scripts/main.sh` continues from notebook 02);
# 3. trains the study's cells in <report>/runs/study-<profile>/ in N processes (default 2, one per core:
#    the wasm backend is single-threaded), shard i/N each (node dist/lib/study/cli.js run), logs in
#    <report>/study-shard-<i>.log, then merges them (cli.js merge: the tables next to the cells);
# 4. executes notebooks/09_regime_study.ipynb headless into the report (run-notebooks.sh --studies).
# Resumable: rerun after a kill; finished cells are skipped and unfinished arms resume from their checkpoints.
# The profile is --profile, else ORDERHEAD_PROFILE (default 'default'); the dataset --data, else ORDERHEAD_DATA.
# The study always works in the report's runs folder (ORDERHEAD_RUN_ROOT is not read here); to shard across
# machines run `node dist/lib/study/cli.js run --root <runs> --shard i/n` on each (README, the crossover study).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${ORDERHEAD_PROFILE:-default}"; data="${ORDERHEAD_DATA:-}"; shards=2; build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --shards) shards="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "study.sh: unknown option '$1' (valid: --profile, --data, --shards, --no-build)" >&2; exit 2 ;;
  esac
done
case "$profile" in smoke|default|full) ;; *) echo "study.sh: unknown profile '$profile': use one of smoke, default, full" >&2; exit 2 ;; esac
case "$shards" in ''|*[!0-9]*|0) echo "study.sh: --shards '$shards' is not a positive whole number (use 2: one per core)" >&2; exit 2 ;; esac
if [ "$build" = 1 ]; then npm run --silent build || { echo "study.sh: the build failed (see above); fix it, or pass --no-build" >&2; exit 1; }; fi
unset ORDERHEAD_RUN_ROOT
state_cli=(node dist/scripts/report-state.js)
data=$("${state_cli[@]}" data --profile "$profile" --data "$data")
export ORDERHEAD_PROFILE="$profile" ORDERHEAD_DATA="$data"
report=$("${state_cli[@]}" latest --profile "$profile" --data "$data" --reports reports)
if [ -z "$report" ]; then
  echo "==> no $profile report on $data holds notebook 01's token cache: running notebooks 00-01 first"
  bash scripts/run-notebooks.sh --profile "$profile" --data "$data" --only '0[01]_' || exit 1
  report=$("${state_cli[@]}" latest --profile "$profile" --data "$data" --reports reports)
  [ -n "$report" ] || { echo "study.sh: notebooks 00-01 ran but no report holds the token cache" >&2; exit 1; }
fi
runs="$report/runs"
echo "==> crossover study ($profile, $data) in $runs/study-$profile: $shards processes, logs $report/study-shard-<i>.log"
start=$(date +%s)
pids=()
# Stopping this script stops the shards it started (their arms resume from their checkpoints on the next run).
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' INT TERM
for ((i = 0; i < shards; i++)); do
  node dist/lib/study/cli.js run --profile "$profile" --root "$runs" --shard "$i/$shards" >"$report/study-shard-$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    tail -n 1 "$report/study-shard-$i.log"
  else
    status=1
    echo "study.sh: shard $i/$shards failed; last lines of $report/study-shard-$i.log:" >&2
    tail -n 20 "$report/study-shard-$i.log" >&2
  fi
done
trap - INT TERM
[ "$status" = 0 ] || exit 1
echo "    cells trained in $(( $(date +%s) - start )) s"
node dist/lib/study/cli.js merge --profile "$profile" --root "$runs"
bash scripts/run-notebooks.sh --profile "$profile" --data "$data" --out "$report" --only 09_regime_study --studies
