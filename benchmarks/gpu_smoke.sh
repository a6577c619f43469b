#!/usr/bin/env bash
# GPU check of the real stages (not a benchmark): prepare -> both RMs -> Safe-MM-DPO (bf16 on CUDA, precompute,
# then a second run that must reuse the cache) on the toy world with the tiny model, through the CLI.
# Usage (on a CUDA machine, from the repo root): bash benchmarks/gpu_smoke.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-${OUT:-/tmp/gpu_smoke}}
RUN=$(mktemp -d)/run
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
SA="python3 -m safealign.cli"
GPU="--set reward.use_cpu=false --set dpo.use_cpu=false --set sft.use_cpu=false"
# DPO starts from the tiny base: this check trains no SFT warm-up (the config, not a folder, decides the start)
NOSFT="--set sft.enabled=false"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "transformers", transformers.__version__)'
t0=$(date +%s)
$SA prepare --config configs/demo.yaml --run-dir "$RUN" --show 0
$SA train-rm --config configs/demo.yaml --run-dir "$RUN" --dimension helpful $GPU
$SA train-rm --config configs/demo.yaml --run-dir "$RUN" --dimension harmless $GPU
t1=$(date +%s)
$SA train-dpo --config configs/demo.yaml --run-dir "$RUN" $GPU $NOSFT 2>&1 | tee "$RUN/dpo1.log"
t2=$(date +%s)
$SA train-dpo --config configs/demo.yaml --run-dir "$RUN" $GPU $NOSFT --stage dpo2 --set dpo.num_train_epochs=1 2>&1 | tee "$RUN/dpo2.log"
t3=$(date +%s)
mkdir -p "$OUT"
python3 - "$RUN" "$OUT" $t0 $t1 $t2 $t3 <<'PY'
import json, sys, pathlib
run, out, t0, t1, t2, t3 = sys.argv[1], pathlib.Path(sys.argv[2]), *map(int, sys.argv[3:])
s = json.loads((pathlib.Path(run) / "models/aligned/train_summary.json").read_text())
log2 = (pathlib.Path(run) / "dpo2.log").read_text()
res = {"rm_seconds": t1 - t0, "dpo_seconds": t2 - t1, "dpo_rerun_seconds": t3 - t2,
       "cache_reused_on_rerun": "reusing" in log2.lower(),
       "summary": {k: s[k] for k in s if not isinstance(s[k], (list, dict)) or k in ("final_metrics", "heldout")}}
(out / "gpu_smoke.json").write_text(json.dumps(res, indent=2, default=str))
print(json.dumps(res, indent=2, default=str)[:3000])
PY
