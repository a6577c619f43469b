#!/usr/bin/env bash
# GPU dry run of the real recipe (configs/mistral7b_pku_saferlhf.yaml): train-rm helpful + harmless, the
# precompute pass + train-dpo, and evaluation's generation, through the real CLI on a random Mistral-7B-shaped
# bf16 model with the real tokenizer and PKU-SafeRLHF-sized synthetic data, a few steps per stage. Writes
# $OUT/gpu_recipe_dryrun.{json,md} (per stage tokens/s, step time, peak memory; the projected wall time of the
# full recipe on one and on eight GPUs) and one log per stage. See benchmarks/gpu_recipe_dryrun.py.
#
# Usage (from the repo root):
#   bash benchmarks/gpu_recipe_dryrun.sh --tokenizer DIR [--out DIR] [--budget-s 540]   # one GPU, ~8-10 min
#   bash benchmarks/gpu_recipe_dryrun.sh --tiny --tokenizer DIR --out /tmp/dryrun         # CPU, < 1 min
# DIR: the Mistral-7B-v0.1 tokenizer folder: `python tests/helpers/real.py DIR` builds it offline (tokenizer.model:
# needs sentencepiece); docs/recipe.md shows how to turn it into a tokenizer.json folder that needs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 \
       TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-/tmp/gpu_recipe_dryrun}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [[ ${args[i]} == --out ]] && OUT_DIR=${args[i+1]}; done
[[ " $* " == *" --out "* ]] || args+=(--out "$OUT_DIR")
mkdir -p "$OUT_DIR"
$PY -c 'import torch, transformers, peft; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "transformers", transformers.__version__,
"peft", peft.__version__)' | tee "$OUT_DIR/environment.txt"
df -h / /tmp /dev/shm 2>/dev/null | tee -a "$OUT_DIR/environment.txt" || true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
  | tee -a "$OUT_DIR/environment.txt" || true
exec $PY benchmarks/gpu_recipe_dryrun.py "${args[@]}"
