#!/usr/bin/env bash
# Run every notebook in notebooks/ headless, in order, in one profile, and collect
# the executed notebooks, their HTML exports and the run artifacts in one report folder.
# Usage: scripts/run-notebooks.sh [--profile smoke|default|full] [--out DIR] [--only PATTERN]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${ORDERHEAD_PROFILE:-default}"; out=""; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "run-notebooks.sh: unknown option '$1' (valid: --profile, --out, --only)" >&2; exit 2 ;;
  esac
done
case "$profile" in smoke|default|full) ;; *) echo "unknown profile '$profile': use one of smoke, default, full" >&2; exit 2 ;; esac
out="${out:-reports/$profile-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
PY=/usr/bin/python3; [ -x "$PY" ] || PY=$(command -v python3)
timeout=$([ "$profile" = smoke ] && echo 600 || echo 7200)

# This checkout's tslab kernel first (scripts/setup.sh registers it under .jupyter/).
export JUPYTER_PATH="$PWD/.jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
export ORDERHEAD_PROFILE="$profile" ORDERHEAD_RUN_ROOT="${ORDERHEAD_RUN_ROOT:-$out/runs}"
status=0
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  [ -z "$only" ] || [[ "$nb" == *$only* ]] || continue
  name=$(basename "$nb" .ipynb)
  echo "==> $name (profile $profile)"
  start=$(date +%s)
  if "$PY" -m nbconvert --to notebook --execute --ExecutePreprocessor.timeout="$timeout" \
       --ExecutePreprocessor.kernel_name=tslab --output-dir "$out" --output "$name.ipynb" "$nb" >"$out/$name.log" 2>&1; then
    "$PY" -m nbconvert --to html "$out/$name.ipynb" --output-dir "$out" >>"$out/$name.log" 2>&1 || true
    echo "    ok in $(( $(date +%s) - start )) s"
  else
    echo "    FAILED after $(( $(date +%s) - start )) s; last lines of $out/$name.log:" >&2
    tail -n 25 "$out/$name.log" >&2
    status=1
  fi
done
echo "report folder: $out"
exit $status
