#!/usr/bin/env bash
# Set up everything OrderHead needs on a Debian machine:
#   Debian packages (classic Jupyter Notebook, nbconvert, python3-venv, Fashion-MNIST, Chromium for the
#   browser test; PyTorch + OpenBLAS for the benchmark, optional),
#   JupyterLab 4 + the Jupyter server in a project-local .venv/ made from Debian's python3, versions pinned
#   in requirements-lab.txt (a deleted or broken .venv/bin/python is detected and the venv rebuilt),
#   npm ci, the TypeScript build, and the tslab Jupyter kernel with an absolute binary path, started with
#   scripts/kernel-preload.ts (send queue, parent watch), registered for the user, this checkout (.jupyter/)
#   and .venv/.
# Safe to re-run: each step is skipped when it is already done.
# Options: --no-apt (skip Debian packages, e.g. on conda; see environment.yml)
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIRED_DEBS=(jupyter-notebook python3-nbconvert python3-nbclient python3-ipykernel python3-venv dataset-fashion-mnist chromium)
OPTIONAL_DEBS=(python3-torch libopenblas0-pthread)
use_apt=1
for arg in "$@"; do
  case "$arg" in
    --no-apt) use_apt=0 ;;
    *) echo "setup.sh: unknown option '$arg' (valid: --no-apt)" >&2; exit 2 ;;
  esac
done

missing() { for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done; }

if [ "$use_apt" = 1 ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  need=$(missing "${REQUIRED_DEBS[@]}" "${OPTIONAL_DEBS[@]}")
  if [ -n "$need" ]; then
    echo "==> apt-get install $(echo $need)"
    $SUDO apt-get update -qq
    # Required packages must install; the benchmark's PyTorch is optional.
    req=$(missing "${REQUIRED_DEBS[@]}")
    [ -z "$req" ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $req
    opt=$(missing "${OPTIONAL_DEBS[@]}")
    [ -z "$opt" ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $opt \
      || echo "note: optional $opt not installed; npm run bench will skip the PyTorch reference"
  fi
fi

# npm ci only when the lockfile changed since the last install.
stamp=node_modules/.orderhead-lock-hash
hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
  echo "$hash" > "$stamp"
fi

echo "==> build (tsc)"
npm run --silent build

PY=/usr/bin/python3; [ -x "$PY" ] || PY=$(command -v python3)

# JupyterLab in .venv/ (requirements-lab.txt): skipped when .venv/bin/python runs, imports JupyterLab and
# was installed from this requirements file; a venv whose python is gone or broken is rebuilt from scratch.
VENV=.venv
req_hash=$(sha256sum requirements-lab.txt | cut -d' ' -f1)
venv_stamp="$VENV/.orderhead-requirements-hash"
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  if [ -e "$VENV" ] || [ -L "$VENV" ]; then
    echo "==> $VENV is broken ($VENV/bin/python is missing or does not run): rebuilding it"
    rm -rf "$VENV"
  fi
fi
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$venv_stamp" 2>/dev/null)" != "$req_hash" ] \
   || ! "$VENV/bin/python" -c 'import jupyterlab, jupyter_server' >/dev/null 2>&1; then
  echo "==> JupyterLab into $VENV (requirements-lab.txt, python: $PY)"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" >/dev/null || { rm -rf "$VENV"; echo "setup.sh: '$PY -m venv' failed: install Debian's python3-venv (sudo apt-get install python3-venv; this script does it without --no-apt), then rerun" >&2; exit 1; }
  fi
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r requirements-lab.txt \
    || { echo "setup.sh: pip could not install requirements-lab.txt into $VENV (network? the Python package index must be reachable); rerun when it is" >&2; exit 1; }
  "$VENV/bin/jupyter" lab --version >/dev/null || { echo "setup.sh: $VENV/bin/jupyter lab does not run after the install; remove $VENV and rerun" >&2; exit 1; }
  echo "$req_hash" > "$venv_stamp"
fi
# Render settings JupyterLab needs for the notebooks' outputs (scripts/jupyterlab-overrides.json: every cell
# kept in the page, so plotly figures in cells scrolled out of view are drawn and stay drawn).
mkdir -p "$VENV/share/jupyter/lab/settings"
cp scripts/jupyterlab-overrides.json "$VENV/share/jupyter/lab/settings/overrides.json"

echo "==> tslab kernel (python: $PY)"
npx --no-install tslab install --python="$PY" --binary="$PWD/node_modules/.bin/tslab" >/dev/null
# A second copy inside this checkout: headless runs (scripts/run-notebooks.sh puts it first on JUPYTER_PATH)
# use this checkout's tslab even after another clone re-registered the per-user kernel.
npx --no-install tslab install --python="$PY" --binary="$PWD/node_modules/.bin/tslab" --prefix="$PWD/.jupyter" >/dev/null
# And one in .venv/, the JupyterLab that scripts/notebook.sh opens.
npx --no-install tslab install --python="$PY" --binary="$PWD/node_modules/.bin/tslab" --prefix="$PWD/$VENV" >/dev/null
# Each kernel starts under node with scripts/kernel-preload.ts (send queue: a kernel that survives its own
# output; parent watch), whoever starts it: JupyterLab, Jupyter Notebook, nbconvert.
user_spec=$("$PY" -c "from jupyter_core.paths import jupyter_data_dir; print(jupyter_data_dir())")/kernels/tslab/kernel.json
[ -f "$user_spec" ] || user_spec=""
for spec in ${user_spec:+"$user_spec"} .jupyter/share/jupyter/kernels/tslab/kernel.json "$VENV/share/jupyter/kernels/tslab/kernel.json"; do
  node -e '
    const fs = require("fs"); const [file, preload] = process.argv.slice(1);
    const spec = JSON.parse(fs.readFileSync(file, "utf8"));
    const i = spec.argv.indexOf("--require");
    const argv = i >= 0 ? spec.argv.slice(i + 2) : spec.argv;
    spec.argv = [process.execPath, "--require", preload, ...argv];
    fs.writeFileSync(file, JSON.stringify(spec, null, 1) + "\n");' "$spec" "$PWD/dist/scripts/kernel-preload.js"
done
"$PY" -c "from jupyter_client.kernelspec import KernelSpecManager as K; import sys; sys.exit(0 if 'tslab' in K().find_kernel_specs() else 1)" || { echo "setup.sh: the tslab kernel did not register; run: npx tslab install --python=$PY" >&2; exit 1; }
echo "==> setup done (JupyterLab: bash scripts/notebook.sh --profile smoke)"
