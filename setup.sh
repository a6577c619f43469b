#!/usr/bin/env bash
# Creates .venv with safealign installed in editable mode, plus the dev extras.
# Torch: keeps a torch that is already importable (e.g. a CUDA build on a GPU machine); otherwise installs
# torch==2.13.0, which is a CPU build already on disk on the project's CPU machines. A constraints file pins
# the chosen torch so no other package drags in a different (multi-GB CUDA) build.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  # --system-site-packages lets a GPU machine's preinstalled torch be seen; harmless elsewhere.
  "$PYTHON" -m venv ${SAFEALIGN_SYSTEM_SITE:+--system-site-packages} "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null); then
  echo "setup.sh: keeping installed torch $TORCH_VERSION"
else
  TORCH_VERSION=${TORCH_VERSION_WANTED:-2.13.0}
  echo "setup.sh: installing torch==$TORCH_VERSION"
  "$PY" -m pip install -q "torch==$TORCH_VERSION"
fi
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"
"$PY" -m pip install -q -c "$CONSTRAINTS" -e ".[dev]"
echo "setup.sh: done. Activate with: source $VENV/bin/activate"
