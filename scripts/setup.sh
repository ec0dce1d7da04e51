#!/usr/bin/env bash
# Set up everything OrderHead needs on a Debian machine:
#   Debian packages (Jupyter, nbconvert, Fashion-MNIST, Chromium for the browser test; PyTorch + OpenBLAS
#   for the benchmark, optional),
#   npm ci, the TypeScript build, and the tslab Jupyter kernel with an absolute binary path.
# Safe to re-run: each step is skipped when it is already done.
# Options: --no-apt (skip Debian packages, e.g. on conda; see environment.yml)
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIRED_DEBS=(jupyter-notebook python3-nbconvert python3-nbclient python3-ipykernel dataset-fashion-mnist chromium)
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
echo "==> tslab kernel (python: $PY)"
npx --no-install tslab install --python="$PY" --binary="$PWD/node_modules/.bin/tslab" >/dev/null
# A second copy inside this checkout: headless runs (scripts/run-notebooks.sh puts it first on JUPYTER_PATH)
# use this checkout's tslab even after another clone re-registered the per-user kernel.
npx --no-install tslab install --python="$PY" --binary="$PWD/node_modules/.bin/tslab" --prefix="$PWD/.jupyter" >/dev/null
"$PY" -c "from jupyter_client.kernelspec import KernelSpecManager as K; import sys; sys.exit(0 if 'tslab' in K().find_kernel_specs() else 1)" || { echo "setup.sh: the tslab kernel did not register; run: npx tslab install --python=$PY" >&2; exit 1; }
echo "==> setup done"
