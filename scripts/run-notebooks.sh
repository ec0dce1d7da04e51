#!/usr/bin/env bash
# Run every notebook in notebooks/ headless, in order, in one profile, and collect
# the executed notebooks, their HTML exports and the run artifacts in one report folder.
# Usage: scripts/run-notebooks.sh [--profile smoke|default|full] [--data fashion-mnist|subset|idx:DIR]
#                                [--out DIR] [--only PATTERN] [--fresh] [--studies]
# --data (or ORDERHEAD_DATA) chooses the dataset; unset, the profile's own (smoke: subset,
# default and full: fashion-mnist). See the README's Data section for idx:DIR.
#
# Resumable: a run continues the newest unfinished report of its profile and dataset
# under reports/, or the --out folder when it
# holds an unfinished one. Notebooks done with unchanged inputs (notebook file, dist/lib,
# profile, dataset, the notebooks before it) are skipped; an interrupted one runs again
# and its stages resume from their checkpoints under <report>/runs. The bookkeeping is
# <report>/report-state.json (scripts/report-state.ts). A finished report (every notebook
# ok) is not continued: the next run starts a new one. --fresh always starts a new report
# (with --out: clears that folder first). Executed notebooks and HTML exports are written
# to a temp name and renamed, so a kill never leaves a torn one.
#
# Study notebooks (NN_*_study.ipynb, e.g. 09_regime_study) are not part of the main job: they run
# only with --studies, after the curriculum's, and never keep a report unfinished. With --studies a
# finished report is opened too, for its study notebooks alone (npm run study: scripts/study.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${ORDERHEAD_PROFILE:-default}"; out=""; only=""; fresh=""; studies=""
data="${ORDERHEAD_DATA:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --fresh) fresh="--fresh"; shift ;;
    --studies) studies="--studies"; shift ;;
    *) echo "run-notebooks.sh: unknown option '$1' (valid: --profile, --data, --out, --only, --fresh, --studies)" >&2; exit 2 ;;
  esac
done
case "$profile" in smoke|default|full) ;; *) echo "unknown profile '$profile': use one of smoke, default, full" >&2; exit 2 ;; esac
state_cli=(node dist/scripts/report-state.js)
for f in report-state kernel-preload; do
  [ -f "dist/scripts/$f.js" ] || { echo "run-notebooks.sh: dist/scripts/$f.js is missing; run: npm run build" >&2; exit 2; }
done
# The dataset's key (idx:DIR made absolute: the kernels run in notebooks/), for the report and the kernels.
data=$("${state_cli[@]}" data --profile "$profile" --data "$data")
export ORDERHEAD_DATA="$data"
out=$("${state_cli[@]}" open --profile "$profile" --data "$data" --notebooks notebooks --reports reports \
        ${out:+--out "$out"} $fresh $studies --pid $$)
if [ -z "$out" ]; then
  echo "nothing to do (the report is finished; --fresh runs it again from scratch)"
  exit 0
fi
PY=/usr/bin/python3; [ -x "$PY" ] || PY=$(command -v python3)
timeout=$([ "$profile" = smoke ] && echo 600 || echo 7200)

# This checkout's tslab kernel first (scripts/setup.sh registers it under .jupyter/).
export JUPYTER_PATH="$PWD/.jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
export ORDERHEAD_PROFILE="$profile" ORDERHEAD_RUN_ROOT="${ORDERHEAD_RUN_ROOT:-$out/runs}"
# Kernels run in a session of their own, out of reach of a kill of this job's process group:
# each one ends itself when its nbconvert is gone, from its start (scripts/kernel-preload.ts).
export NODE_OPTIONS="--require \"$PWD/dist/scripts/kernel-preload.js\"${NODE_OPTIONS:+ $NODE_OPTIONS}"
# nbconvert writes into a staging folder <report>/<name>.tmp-<pid>-<hex>, renamed into place when
# complete; the runner's next start removes the staging folder of a killed run.
staging() { local d; d="$out/$1.tmp-$$-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"; mkdir "$d"; echo "$d"; }
status=0
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  [ -z "$only" ] || [[ "$nb" == *$only* ]] || continue
  case "$nb" in *_study.ipynb) [ -n "$studies" ] || continue ;; esac
  name=$(basename "$nb" .ipynb)
  echo "==> $name (profile $profile, dataset $data)"
  answer=$("${state_cli[@]}" begin "$out" "$nb")
  decision=${answer%% *}; why=${answer#* }
  if [ "$decision" = skip ]; then
    echo "    skipped: $why"
    continue
  fi
  echo "    running: $why"
  start=$(date +%s)
  stage=$(staging "$name")
  if "$PY" -m nbconvert --to notebook --execute --ExecutePreprocessor.timeout="$timeout" \
       --ExecutePreprocessor.kernel_name=tslab --output-dir "$stage" --output "$name.ipynb" "$nb" >"$out/$name.log" 2>&1; then
    # Signed with this user's Jupyter key (as Jupyter signs a notebook you ran yourself), so JupyterLab opened
    # on this machine trusts the saved outputs and draws their figures without a rerun.
    "$PY" -m nbformat.sign "$stage/$name.ipynb" >>"$out/$name.log" 2>&1 || echo "    note: could not sign $name.ipynb (open it and use File > Trust Notebook)"
    mv -f "$stage/$name.ipynb" "$out/$name.ipynb"
    if "$PY" -m nbconvert --to html "$out/$name.ipynb" --output-dir "$stage" >>"$out/$name.log" 2>&1; then
      mv -f "$stage/$name.html" "$out/$name.html"
    else
      rm -f "$out/$name.html"
    fi
    rm -rf "$stage"
    "${state_cli[@]}" end "$out" "$nb" ok $(( $(date +%s) - start ))
    echo "    ok in $(( $(date +%s) - start )) s"
  else
    rm -rf "$stage"
    "${state_cli[@]}" end "$out" "$nb" failed $(( $(date +%s) - start ))
    echo "    FAILED after $(( $(date +%s) - start )) s; last lines of $out/$name.log:" >&2
    tail -n 25 "$out/$name.log" >&2
    status=1
  fi
done
echo "report $("${state_cli[@]}" finish "$out" $studies)"
echo "report folder: $out"
exit $status
