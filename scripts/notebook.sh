#!/usr/bin/env bash
# Open the notebooks interactively: JupyterLab where it is installed (`jupyter lab`), else
# Jupyter Notebook, on notebooks/, with this checkout's tslab kernel and one profile.
# Run folders go to reports/interactive-<profile>/runs (ORDERHEAD_RUN_ROOT overrides), the same
# place every time, so a notebook opened tomorrow finds the runs of the ones before it.
# Usage: scripts/notebook.sh [--profile smoke|default|full] [--notebook] [-- JUPYTER ARGS...]
#   --notebook   use Jupyter Notebook even where JupyterLab is installed
#   after --      passed to jupyter as they are (e.g. -- --no-browser --port 8899)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${ORDERHEAD_PROFILE:-default}"; app=""; extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || { echo "notebook.sh: --profile needs a value" >&2; exit 2; }; profile="$2"; shift 2 ;;
    --notebook) app=notebook; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "notebook.sh: unknown option '$1' (valid: --profile, --notebook, -- JUPYTER ARGS)" >&2; exit 2 ;;
  esac
done
case "$profile" in smoke|default|full) ;; *) echo "unknown profile '$profile': use one of smoke, default, full" >&2; exit 2 ;; esac

command -v jupyter >/dev/null || { echo "notebook.sh: jupyter is not installed: run bash scripts/setup.sh" >&2; exit 1; }
[ -f .jupyter/share/jupyter/kernels/tslab/kernel.json ] \
  || { echo "notebook.sh: this checkout's tslab kernel is not registered (.jupyter/): run bash scripts/setup.sh" >&2; exit 1; }
# The notebooks import ../dist/lib: build when it is missing or older than a source file.
if [ ! -f dist/lib/index.js ] || [ -n "$(find lib -name '*.ts' -newer dist/lib/index.js -print -quit)" ]; then
  echo "==> build (tsc)"
  npm run --silent build
fi
if [ -z "$app" ]; then
  if jupyter lab --version >/dev/null 2>&1; then app=lab; else app=notebook; fi
fi

# This checkout's tslab kernel first (as scripts/run-notebooks.sh does); the kernel inherits the rest.
export JUPYTER_PATH="$PWD/.jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
export ORDERHEAD_PROFILE="$profile"
# ORDERHEAD_DATA as its key (idx:DIR made absolute: the kernels run in notebooks/); a bad value stops here.
if [ -n "${ORDERHEAD_DATA:-}" ]; then ORDERHEAD_DATA=$(node dist/scripts/report-state.js data --profile "$profile" --data "$ORDERHEAD_DATA") || exit 2; export ORDERHEAD_DATA; fi
export ORDERHEAD_RUN_ROOT="${ORDERHEAD_RUN_ROOT:-$PWD/reports/interactive-$profile/runs}"
mkdir -p "$ORDERHEAD_RUN_ROOT"
ORDERHEAD_RUN_ROOT=$(cd "$ORDERHEAD_RUN_ROOT" && pwd)
root_flag=(); [ "$(id -u)" != 0 ] || root_flag=(--allow-root)

name=$([ "$app" = lab ] && echo JupyterLab || echo "Jupyter Notebook")
echo "==> $name on notebooks/ (kernel: TypeScript, this checkout's tslab)"
echo "    profile:   $profile (ORDERHEAD_PROFILE)"
echo "    dataset:   ${ORDERHEAD_DATA:-the profile default} (ORDERHEAD_DATA)"
echo "    run root:  $ORDERHEAD_RUN_ROOT (ORDERHEAD_RUN_ROOT; run 00_setup ... 08_evaluation in order, each reads the runs of the ones before)"
echo "    stop with Ctrl+C"
exec jupyter "$app" --notebook-dir=notebooks ${root_flag[@]+"${root_flag[@]}"} ${extra[@]+"${extra[@]}"}
