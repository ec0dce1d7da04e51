#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh), then the unit tier
# (tests/unit/<area>/: npm run test:unit), the fast integration tests (npm run test:integration: training
# children killed and resumed, thread pools and parallel oracle builds in child processes, every notebook
# type-checked against the library, the kernel stress test), every notebook headless in the smoke profile (nbconvert; the
# study notebook 09 too, with --studies), notebook 08's evaluation on two
# workers against one thread on that run (tests/integration/evaluation-workers.test.ts), the smoke main job killed and
# resumed (tests/integration/main-resume.test.ts), the smoke main job on a synthetic idx:DIR dataset
# (tests/integration/data-main.test.ts), every notebook again in the JupyterLab UI in headless Chromium
# and the headless run's executed notebooks reopened there (tests/integration/browser/notebooks-ui.ts;
# screenshots in test-output/browser/).
# Ends with one summary line.
# Options: --no-setup (skip installation; what `npm test` does)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--no-setup" ]; then bash scripts/setup.sh || exit 1; fi
npm run --silent build || exit 1
logs=$(mktemp -d)

echo "==> unit tests (tests/unit)"
node --test --test-concurrency=2 dist/tests/unit/ | tee "$logs/unit.log"
unit_status=${PIPESTATUS[0]}
echo "==> integration: killed training children resume, thread pools and parallel oracle builds in child processes,"
echo "    notebooks type-check, the kernel survives a flood of output (tests/integration)"
node --test --test-concurrency=1 dist/tests/integration/kill-resume.test.js dist/tests/integration/threads.test.js \
  dist/tests/integration/oracle-parallel.test.js dist/tests/integration/notebooks.test.js \
  dist/tests/integration/kernel-stress.test.js | tee -a "$logs/unit.log"
[ "${PIPESTATUS[0]}" = 0 ] || unit_status=1
unit_pass=$(grep -E '^# pass [0-9]+' "$logs/unit.log" | awk '{s += $3} END {print s + 0}')
unit_fail=$(grep -E '^# fail [0-9]+' "$logs/unit.log" | awk '{s += $3} END {print s + 0}')

echo "==> notebooks (smoke profile; with the study notebook 09, which the main job leaves out)"
rm -rf runs/test-notebooks
bash scripts/run-notebooks.sh --profile smoke --studies --out runs/test-notebooks 2>&1 | tee "$logs/nb.log"
nb_status=${PIPESTATUS[0]}
nb_pass=$(grep -c '^    ok in' "$logs/nb.log")
nb_fail=$(grep -c '^    FAILED' "$logs/nb.log")

echo "==> notebook 08 on two workers equals one thread (on the smoke run above)"
ORDERHEAD_EVAL_WORKERS_RUNS="$PWD/runs/test-notebooks/runs" \
  node --test --test-concurrency=1 dist/tests/integration/evaluation-workers.test.js | tee "$logs/workers.log"
workers_status=${PIPESTATUS[0]}
workers_pass=$(grep -E '^# pass [0-9]+' "$logs/workers.log" | tail -1 | awk '{print $3}')
workers_fail=$(grep -E '^# fail [0-9]+' "$logs/workers.log" | tail -1 | awk '{print $3}')

echo "==> main job killed and resumed (smoke profile; compared with the run above)"
# tests/integration/main-resume.test.ts: the smoke job killed 5 times, then finished; its results must equal
# the uninterrupted run just made (reused as the reference when it finished).
ORDERHEAD_MAIN_RESUME_TEST=1 ORDERHEAD_MAIN_RESUME_REFERENCE="$PWD/runs/test-notebooks" \
  node --test --test-concurrency=1 dist/tests/integration/main-resume.test.js | tee "$logs/resume.log"
resume_status=${PIPESTATUS[0]}
resume_pass=$(grep -E '^# pass [0-9]+' "$logs/resume.log" | tail -1 | awk '{print $3}')
resume_fail=$(grep -E '^# fail [0-9]+' "$logs/resume.log" | tail -1 | awk '{print $3}')

echo "==> main job on your own data (smoke profile, ORDERHEAD_DATA=idx:DIR on a synthetic set)"
# tests/integration/data-main.test.ts: every notebook on four shape classes of 20x20 images, with their names in the outputs.
ORDERHEAD_DATA_MAIN_TEST=1 node --test --test-concurrency=1 dist/tests/integration/data-main.test.js | tee "$logs/data.log"
data_status=${PIPESTATUS[0]}
data_pass=$(grep -E '^# pass [0-9]+' "$logs/data.log" | tail -1 | awk '{print $3}')
data_fail=$(grep -E '^# fail [0-9]+' "$logs/data.log" | tail -1 | awk '{print $3}')

echo "==> notebooks in the browser (smoke profile, JupyterLab UI; then the headless run's notebooks reopened)"
node dist/tests/integration/browser/notebooks-ui.js --out test-output/browser --reopen runs/test-notebooks 2>&1 | tee "$logs/browser.log"
br_status=${PIPESTATUS[0]}
br_pass=$(grep -E '^browser notebooks: [0-9]+ passed' "$logs/browser.log" | tail -1 | awk '{print $3}')
br_fail=$(grep -E '^browser notebooks: [0-9]+ passed' "$logs/browser.log" | tail -1 | awk '{print $5}')

passed=$(( ${unit_pass:-0} + nb_pass + ${workers_pass:-0} + ${resume_pass:-0} + ${data_pass:-0} + ${br_pass:-0} ))
failed=$(( ${unit_fail:-0} + nb_fail + ${workers_fail:-0} + ${resume_fail:-0} + ${data_fail:-0} + ${br_fail:-0} ))
# A runner that crashed without counting still fails the suite.
[ "$unit_status" = 0 ] || [ "$failed" -gt 0 ] || failed=1
[ "$nb_status" = 0 ] || [ "$nb_fail" -gt 0 ] || failed=$(( failed + 1 ))
[ "$workers_status" = 0 ] || [ "${workers_fail:-0}" -gt 0 ] || failed=$(( failed + 1 ))
[ "$resume_status" = 0 ] || [ "${resume_fail:-0}" -gt 0 ] || failed=$(( failed + 1 ))
[ "$data_status" = 0 ] || [ "${data_fail:-0}" -gt 0 ] || failed=$(( failed + 1 ))
[ "$br_status" = 0 ] || [ "${br_fail:-0}" -gt 0 ] || failed=$(( failed + 1 ))
echo "unit + fast integration tests: ${unit_pass:-0} passed, ${unit_fail:-0} failed; notebooks: $nb_pass passed, $nb_fail failed; 08 on workers: ${workers_pass:-0} passed, ${workers_fail:-0} failed; main-job resume: ${resume_pass:-0} passed, ${resume_fail:-0} failed; own-data main job: ${data_pass:-0} passed, ${data_fail:-0} failed; browser notebooks: ${br_pass:-0} passed, ${br_fail:-0} failed"
echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
