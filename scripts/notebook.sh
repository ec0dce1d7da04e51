#!/usr/bin/env bash
# Open the notebooks interactively: JupyterLab 4 from this checkout's .venv/ (scripts/setup.sh installs it,
# requirements-lab.txt), on this checkout with notebooks/ open, this checkout's tslab kernel and one profile.
# The Lab's file browser also reaches reports/ (executed notebooks of the main job: they open with their
# figures, see the README).
# Run folders go to reports/interactive-<profile>/runs (ORDERHEAD_RUN_ROOT overrides), the same
# place every time, so a notebook opened tomorrow finds the runs of the ones before it.
# Usage: scripts/notebook.sh [--profile smoke|default|full] [--port N] [--notebook] [-- JUPYTER ARGS...]
#   --port N     listen on port N (default 8888); a busy port stops here with a message
#   --notebook   Debian's classic Jupyter Notebook 6 instead of JupyterLab (on notebooks/)
#   after --      passed to jupyter as they are (e.g. -- --no-browser)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${ORDERHEAD_PROFILE:-default}"; app=lab; port=8888; extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || { echo "notebook.sh: --profile needs a value (smoke, default or full)" >&2; exit 2; }; profile="$2"; shift 2 ;;
    --port) [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "notebook.sh: --port needs a number, e.g. --port 8899" >&2; exit 2; }; port="$2"; shift 2 ;;
    --notebook) app=notebook; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "notebook.sh: unknown option '$1' (valid: --profile, --port, --notebook, -- JUPYTER ARGS)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  smoke|default|full) ;;
  *) echo "notebook.sh: unknown profile '$profile': use one of smoke, default, full (e.g. bash scripts/notebook.sh --profile smoke)" >&2; exit 2 ;;
esac

if [ "$app" = lab ]; then
  jupyter=.venv/bin/jupyter
  [ -x .venv/bin/python ] && "$jupyter" lab --version >/dev/null 2>&1 \
    || { echo "notebook.sh: JupyterLab is not installed in .venv/ (or .venv/ is broken): run bash scripts/setup.sh (it builds .venv/ from requirements-lab.txt)" >&2; exit 1; }
else
  jupyter=$(command -v jupyter || true)
  [ -n "$jupyter" ] && "$jupyter" notebook --version >/dev/null 2>&1 \
    || { echo "notebook.sh: Jupyter Notebook is not installed: run bash scripts/setup.sh (Debian's jupyter-notebook), or leave out --notebook for JupyterLab" >&2; exit 1; }
fi
[ -f .jupyter/share/jupyter/kernels/tslab/kernel.json ] \
  || { echo "notebook.sh: this checkout's tslab kernel is not registered (.jupyter/): run bash scripts/setup.sh" >&2; exit 1; }
[ -d node_modules/tslab ] || { echo "notebook.sh: node_modules/ is missing: run bash scripts/setup.sh (npm ci)" >&2; exit 1; }
# The notebooks import ../dist/lib, the kernel preloads dist/scripts/kernel-preload.js: build when missing or older than a source.
if [ ! -f dist/lib/index.js ] || [ ! -f dist/scripts/kernel-preload.js ] \
   || [ -n "$(find lib scripts -name '*.ts' -newer dist/lib/index.js -print -quit)" ]; then
  echo "==> build (tsc): dist/ is missing or older than the sources"
  npm run --silent build || { echo "notebook.sh: the build failed (see above): fix the error, or run bash scripts/setup.sh, then rerun" >&2; exit 1; }
fi
# A busy port: say so here instead of letting Jupyter move to another one or fail deep in its log.
if node -e '
  const s = require("net").createServer();
  s.once("error", () => process.exit(1));
  s.listen(Number(process.argv[1]), "127.0.0.1", () => s.close(() => process.exit(0)));' "$port"; then :; else
  echo "notebook.sh: port $port is in use (another Jupyter? see: $jupyter server list): stop it, or choose another port: bash scripts/notebook.sh --profile $profile --port $((port + 11))" >&2
  exit 1
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

if [ "$app" = lab ]; then
  name="JupyterLab $("$jupyter" lab --version) (.venv/)"
  args=(lab --ServerApp.root_dir="$PWD" --LabApp.default_url=/lab/tree/notebooks)
else
  name="Jupyter Notebook $("$jupyter" notebook --version) (Debian)"
  args=(notebook --notebook-dir=notebooks)
fi
echo "==> $name on port $port (kernel: TypeScript, this checkout's tslab)"
echo "    profile:   $profile (ORDERHEAD_PROFILE)"
echo "    dataset:   ${ORDERHEAD_DATA:-the profile default} (ORDERHEAD_DATA)"
echo "    run root:  $ORDERHEAD_RUN_ROOT (ORDERHEAD_RUN_ROOT; run 00_setup ... 08_evaluation in order, each reads the runs of the ones before)"
echo "    stop with Ctrl+C"
exec "$jupyter" "${args[@]}" --port="$port" --port-retries=0 ${root_flag[@]+"${root_flag[@]}"} ${extra[@]+"${extra[@]}"}
