#!/usr/bin/env bash
# This wave's GPU figures in as few device calls as a 15-minute lease allows (issues 13 and 16):
#   part trainer   bench_gpu_trainer.py (SafeMMDPOTrainer padded / padding-free / no recompute vs TRL DPOTrainer,
#                  each with one profiled step), then the recipe dry run (gpu_recipe_dryrun.sh) in the time left
#   part memory    bench_gpu_mistral.py seed batch + online mode: the precompute/online peak-memory ratio
#   part rerun     the second call of 2026-12-04: SafeMMDPOTrainer with/without the LoRA input-cast fix and
#                  without recompute, the memory part, TRL in a process of its own, then padding-free on varied
#                  lengths, each bounded by what is left
# Every figure goes under $OUT (JSON written after each phase, so a run cut short keeps what it measured) and the
# whole output to $OUT/session_<part>.log. Python packages the GPU image lacks (TRL and its datasets stack) travel
# as wheels in .whl/ and the Mistral-7B-v0.1 tokenizer in .gpu/mistral_tok; both are made here and kept out of git:
#   echo /.whl/ >> .git/info/exclude; echo /.gpu/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
#   python tests/helpers/real.py .gpu/mistral_tok
# then one device call per part, carrying [".whl", ".gpu"]. (Do not carry a pyarrow wheel beside the image's
# own: TRL's dataset step failed with a PicklingError that way on 2026-12-04.)
#
#   bash benchmarks/gpu_session.sh trainer 560     # part, seconds this call may use
#   TINY=1 OUT=/tmp/s bash benchmarks/gpu_session.sh trainer 300   # the same logic on a CPU with tiny models
set -uo pipefail
cd "$(dirname "$0")/.."
PART=${1:?part: trainer, rerun or memory}
LIMIT=${2:-560}
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
T0=$(date +%s)
TINY=${TINY:+--tiny}
left() { echo $((LIMIT - ($(date +%s) - T0))); }
exec > >(tee -a "$OUT/session_$PART.log") 2>&1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
date -u
python3 -c 'import torch, transformers, peft, trl, datasets; print("torch", torch.__version__, "transformers",
transformers.__version__, "peft", peft.__version__, "trl", trl.__version__, "datasets", datasets.__version__)'
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
case $PART in
  trainer)
    timeout 200 python3 benchmarks/bench_gpu_trainer.py --out "$OUT/gpu_trainer.json" --warmup 2 --steps 3 $TINY
    echo "[session] trainer bench rc=$? at $(( $(date +%s) - T0 )) s; $(left) s left"
    B=$(( $(left) - 15 ))
    if (( B > 60 )); then
      timeout "$B" bash benchmarks/gpu_recipe_dryrun.sh $TINY --tokenizer .gpu/mistral_tok --out "$OUT/dryrun" \
        --budget-s $(( B - 20 ))
      echo "[session] dry run rc=$? at $(( $(date +%s) - T0 )) s"
    fi ;;
  rerun)
    timeout 130 python3 benchmarks/bench_gpu_trainer.py --out "$OUT/gpu_trainer_fix.json" --warmup 2 --steps 3 \
      --configs safealign,safealign_peftcast,safealign_nockpt $TINY
    echo "[session] trainer fix rc=$? at $(( $(date +%s) - T0 )) s; $(left) s left"
    timeout 100 python3 benchmarks/bench_gpu_mistral.py --out "$OUT/gpu_mistral.json" --budget-s 40 --max-pairs 16 \
      $TINY
    echo "[session] memory rc=$? at $(( $(date +%s) - T0 )) s; $(left) s left"
    B=$(( $(left) - 10 ))
    (( B > 30 )) && timeout "$B" python3 benchmarks/bench_gpu_trainer.py --out "$OUT/gpu_trainer_trl.json" \
      --warmup 2 --steps 3 --configs trl_precompute $TINY
    echo "[session] trl rc=$? at $(( $(date +%s) - T0 )) s; $(left) s left"
    B=$(( $(left) - 5 ))
    (( B > 40 )) && timeout "$B" python3 benchmarks/bench_gpu_trainer.py --out "$OUT/gpu_trainer_vary.json" \
      --warmup 1 --steps 3 --vary --no-profile --configs safealign,safealign_packed $TINY
    echo "[session] vary rc=$? at $(( $(date +%s) - T0 )) s" ;;
  memory)
    timeout "$(( $(left) - 10 ))" python3 benchmarks/bench_gpu_mistral.py --out "$OUT/gpu_mistral.json" \
      --budget-s 45 --max-pairs 16 $TINY
    echo "[session] memory bench rc=$? at $(( $(date +%s) - T0 )) s" ;;
  *) echo "unknown part $PART" >&2; exit 2 ;;
esac
