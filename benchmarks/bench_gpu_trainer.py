"""The real trainers side by side on one GPU: safealign's SafeMMDPOTrainer (precompute mode, padded and
padding-free) against TRL's DPOTrainer with precompute_ref_log_probs=True, same policy, batch and lengths.

Why a second GPU script: bench_gpu_mistral.py builds the step by hand; this one times `trainer.train()` of the
trainers users run (issue 16, part 3). Policy: Mistral-7B architecture (`MistralConfig()`, random bf16 weights
built on the GPU, nothing downloaded), LoRA r=16 on all linear layers, activation checkpointing, bf16.
Tokenizer: word-level over 32,000 words (common.build_tokenizer), so a record's lengths are exact.

Configurations, each one `trainer.train()` of `--warmup + --steps` optimizer steps (GA 1), timed per step by a
callback (CUDA synchronised), peak = torch.cuda.max_memory_allocated over the timed steps:
  safealign          SafeMMDPOTrainer, precompute mode (reference log-probs and judge scores are batch inputs)
  safealign_packed   the same with dpo.padding_free (one packed row under flash-attention, else rows ≤ longest)
  trl_precompute     TRL DPOTrainer(precompute_ref_log_probs=True); its one-off reference pass is not timed
  safealign_peftcast safealign with peft's own LoRA input cast (what every stage did before
                     models/lora_cast.py: a bf16 -> fp32 -> bf16 copy of each adapted layer's input)
  safealign_nockpt   safealign without activation checkpointing (no recompute; more memory: what it costs is the
                     peak it reports)
With --profile, one more step after the timed ones runs under torch.profiler (not in the step times): the GPU
kernels' time by category (matmul, attention, elementwise/copy, other), the top kernels, and how much of the
step's wall time the GPU was busy at all.
The LoRA adapter is removed (`unload()`) and a fresh one made between configurations: the base weights are
built once. Cached reference values for safealign are random numbers: the step's cost does not depend on them.

MFU = model FLOPs / step time / peak (989 TFLOP/s dense bf16 on H100/H200), model FLOPs as in
bench_gpu_mistral.py (flops_per_step) over the REAL tokens of the step (padding excluded, same for all).

    python benchmarks/bench_gpu_trainer.py --out $OUT/gpu_trainer.json                 # GPU, ~5-8 min
    python benchmarks/bench_gpu_trainer.py --tiny --out /tmp/t.json                    # CPU check
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CONFIGS = ("safealign", "safealign_peftcast", "safealign_nockpt", "safealign_packed", "trl_precompute")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny Mistral config on CPU (a check of the script)")
    ap.add_argument("--pairs", type=int, default=None, help="pairs per micro-batch (default 16; tiny 2)")
    ap.add_argument("--prompt-len", type=int, default=None, help="prompt words = tokens (default 128; tiny 16)")
    ap.add_argument("--response-len", type=int, default=None, help="response tokens (default 384; tiny 16)")
    ap.add_argument("--vary", action="store_true", help="lengths uniform in [½,1]×max (padding for packing)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5; tiny 2)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                    help="one extra step per configuration under torch.profiler (default on)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    a.pairs = a.pairs or (2 if a.tiny else 16)
    a.prompt_len = a.prompt_len or (16 if a.tiny else 128)
    a.response_len = a.response_len or (16 if a.tiny else 384)
    a.steps = a.steps or (2 if a.tiny else 5)
    a.configs = [c for c in a.configs.split(",") if c]
    return a


def build_base(a, tok, device, dtype):
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    if a.tiny:
        cfg = MistralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048)
    else:
        cfg = MistralConfig(vocab_size=len(tok))  # Mistral-7B-v0.1 architecture (vocab 32,000)
    cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
    cfg.use_cache = False
    try:
        import flash_attn  # noqa: F401

        cfg._attn_implementation = "flash_attention_2" if device.type == "cuda" else "sdpa"
    except ImportError:
        cfg._attn_implementation = "sdpa"
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # built on the GPU: no 28 GB float32 copy on the host
            model = MistralForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)
    return model.to(dtype)


def model_info(model) -> dict:
    n_total = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()
    c = model.config
    return dict(params_total=n_total, params_matmul=n_total - n_embed, layers=c.num_hidden_layers,
                hidden=c.hidden_size, vocab=c.vocab_size, attn=c._attn_implementation)


def model_flops(info: dict, n_lora: int, tokens: int, seq: int) -> float:
    """As bench_gpu_mistral.flops_per_step: forward + backward through frozen weights + LoRA weight grads."""
    attn_fwd = 2 * info["layers"] * seq * info["hidden"] * tokens
    return 4 * info["params_matmul"] * tokens + 3 * attn_fwd + 4 * n_lora * tokens


KERNEL_CATEGORIES = (  # first match wins; names of cuBLAS/CUTLASS/flash/SDPA and ATen elementwise kernels
    ("attention", ("flash", "fmha", "attention", "attn", "sdpa", "efficient")),
    ("matmul", ("gemm", "cutlass", "sm90_", "sm80_", "cublas", "matmul", "xmma", "nvjet", "aten::mm", "addmm", "bmm",
                "mmbackward")),
    ("elementwise_copy", ("elementwise", "vectorized", "copy", "cast", "fill", "unrolled", "reduce", "softmax",
                          "index", "cat", "where", "mul", "add")),
)


def kernel_category(name: str) -> str:
    low = name.lower()
    return next((cat for cat, keys in KERNEL_CATEGORIES if any(k in low for k in keys)), "other")


def profile_summary(prof, wall_s: float, cuda: bool) -> dict:
    """Device time by kernel category, the top kernels, and the GPU's busy share of the step's wall time."""
    events = prof.key_averages()
    if cuda:
        from torch.autograd import DeviceType

        rows = [(e.key, getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)), e.count)
                for e in events if getattr(e, "device_type", None) == DeviceType.CUDA]
    else:  # CPU check of the code path: CPU ops stand in for kernels
        rows = [(e.key, e.self_cpu_time_total, e.count) for e in events]
    total_us = sum(t for _, t, _ in rows) or 1.0
    by_cat: dict[str, float] = {}
    for key, t, _ in rows:
        cat = kernel_category(key)
        by_cat[cat] = by_cat.get(cat, 0.0) + t
    top = sorted(rows, key=lambda r: -r[1])[:15]
    return {"wall_s": round(wall_s, 4), "kernel_s": round(total_us / 1e6, 4),
            "busy_share": round(total_us / 1e6 / wall_s, 3) if cuda else None,
            "by_category_share": {k: round(v / total_us, 3) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
            "top": [{"name": k[:120], "share": round(t / total_us, 4), "calls": n} for k, t, n in top]}


def _step_timer(sync, profile_at: int | None, cuda: bool):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Times every optimizer step (device synchronised); step `profile_at` (0-based) runs under the profiler."""

        def __init__(self):
            self.times, self._t0, self._prof, self.profile = [], None, None, None

        def on_step_begin(self, args, state, control, **kw):
            sync()
            if profile_at is not None and len(self.times) == profile_at:
                from torch.profiler import ProfilerActivity, profile

                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
                self._prof = profile(activities=acts)
                self._prof.__enter__()
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            dt = time.perf_counter() - self._t0
            self.times.append(dt)
            if self._prof is not None:
                self._prof.__exit__(None, None, None)
                self.profile = profile_summary(self._prof, dt, cuda)
                self._prof = None

    return StepTimer()


def run_config(name, a, base, tok, records, device) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    max_length, max_prompt = a.prompt_len + a.response_len + 32, a.prompt_len + 16
    out_dir = tempfile.mkdtemp(prefix="bench-gpu-trainer-")
    shared = dict(output_dir=out_dir, per_device_train_batch_size=a.pairs, gradient_accumulation_steps=1,
                  max_steps=a.warmup + a.steps + int(a.profile), learning_rate=1e-5, warmup_steps=0, max_grad_norm=1.0,
                  logging_steps=10**6, save_strategy="no", eval_strategy="no", report_to="none", seed=0,
                  dataloader_num_workers=0, use_cpu=not cuda, disable_tqdm=True, bf16=cuda,
                  activation_checkpointing=not (a.no_checkpointing or name.endswith("_nockpt")),
                  activation_checkpointing_kwargs={"use_reentrant": False})

    def with_checkpointing_names(cls) -> dict:
        # transformers 5.17 (the GPU machine) knows only gradient_checkpointing*, 5.2x deprecates it: the name
        # each version takes comes from safealign's one owner of that rule
        import dataclasses

        from safealign.training import checkpointing_keys

        return checkpointing_keys(shared, {f.name for f in dataclasses.fields(cls)})

    off = getattr(base, "activation_checkpointing_disable", None) or getattr(base, "gradient_checkpointing_disable")
    off()  # the previous configuration's trainer turned it on for the shared base; the arguments decide again
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    t0 = time.perf_counter()
    if name.startswith("safealign"):
        from safealign.dpo.config import SafeDPOConfig
        from safealign.dpo.data import CACHED, PairCollator, PairDataset, tokenize_records
        from safealign.dpo.trainer import SafeMMDPOTrainer

        g = torch.Generator().manual_seed(0)
        def value(k):  # reference log-probs are large negative sums; judge scores ~ N(0, 1)
            return float(-torch.rand(1, generator=g) * 300) if k.startswith("ref") else float(torch.randn(1, generator=g))

        cached = [{k: value(k) for k in CACHED} for _ in records]
        feats = tokenize_records(records, tok, max_length, max_prompt, cached)
        args = SafeDPOConfig(algorithm="safe_mm_dpo", precompute=True, padding_free=name == "safealign_packed",
                             max_length=max_length, max_prompt_length=max_prompt, metric_for_best_model=None,
                             **with_checkpointing_names(SafeDPOConfig))
        policy = get_peft_model(base, lora)
        trainer = SafeMMDPOTrainer(model=policy, args=args, train_dataset=PairDataset(feats),
                                   data_collator=PairCollator(tok.pad_token_id), processing_class=tok)
        if name == "safealign_peftcast":
            from safealign.models.lora_cast import restore_lora_input_cast

            restore_lora_input_cast(policy)
        tokens = sum(len(f["input_ids_0"]) + len(f["input_ids_1"]) for f in feats[: a.pairs])
        seq = max(max(len(f["input_ids_0"]), len(f["input_ids_1"])) for f in feats)
    else:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        from safealign.chat import prompt_text, response_text

        rows = [{"prompt": prompt_text(tok, r["prompt"]), "chosen": response_text(r["response_0"]),
                 "rejected": response_text(r["response_1"])} for r in records]
        args = DPOConfig(beta=0.1, max_length=max_length, precompute_ref_log_probs=True,
                         **with_checkpointing_names(DPOConfig))
        trainer = DPOTrainer(model=base, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                             peft_config=lora)
        policy = trainer.model
        enc = [len(tok(r["prompt"] + r["chosen"])["input_ids"]) + len(tok(r["prompt"] + r["rejected"])["input_ids"])
               for r in rows[: a.pairs]]
        tokens, seq = sum(enc), max_length
    init_s = time.perf_counter() - t0
    n_lora = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    timer = _step_timer(sync, a.warmup + a.steps if a.profile else None, cuda)
    trainer.add_callback(timer)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()  # TRL's one-off reference pass runs inside, before the first step: not in the step times
    times = timer.times[a.warmup:a.warmup + a.steps]
    med = sorted(times)[len(times) // 2]
    res = {"config": name, "init_s": round(init_s, 2), "step_s": times, "step_s_median": med,
           "tokens_per_step": tokens, "tokens_per_s": tokens / med, "params_lora": n_lora,
           "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None, "profile": timer.profile,
           "activation_checkpointing": shared["activation_checkpointing"]}
    if cuda:
        name_gpu = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name_gpu), None)
        if peak:
            res["mfu"] = model_flops(a.info, n_lora, tokens, seq) / med / (peak * 1e12)
    # give the base weights back without an adapter for the next configuration
    inner = getattr(policy, "unload", None)
    del trainer
    if inner is not None:
        inner()
    if cuda:
        torch.cuda.empty_cache()
    return res


def main(argv=None) -> int:
    import torch

    a = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not a.tiny:
        print("bench_gpu_trainer: no GPU; use --tiny for a CPU check", file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tok = common.build_tokenizer(512 if a.tiny else 32000)
    n = a.pairs * (a.warmup + a.steps)
    records = common.synthetic_records(n, a.prompt_len, a.response_len, len(tok), seed=0, vary=a.vary)
    base = build_base(a, tok, device, dtype)
    a.info = model_info(base)
    result = {"benchmark": "gpu_trainer", "argv": sys.argv[1:], "model": a.info, "machine": common.machine_info(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "configs": {}}
    for name in a.configs:
        print(f"[gpu_trainer] {name}", file=sys.stderr, flush=True)
        try:
            with warnings.catch_warnings():
                # peft 0.21 and TRL 1.16 call the names transformers 5.2x deprecates (is_gradient_checkpointing,
                # gradient_checkpointing_enable/disable): library internals, the same behaviour either way
                warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is "
                                        "deprecated", category=FutureWarning)
                result["configs"][name] = run_config(name, a, base, tok, records, device)
        except Exception as err:  # noqa: BLE001 - one failing trainer must not lose the others' figures
            import traceback

            result["configs"][name] = {"error": f"{type(err).__name__}: {err}"[:2000],
                                       "traceback": traceback.format_exc()[-4000:]}
        if a.out:
            common.write_json_atomic(Path(a.out), result)
    c = result["configs"]
    ok = {k: v for k, v in c.items() if "tokens_per_s" in v}
    if "trl_precompute" in ok:
        result["vs_trl_tokens_per_s"] = {k: v["tokens_per_s"] / ok["trl_precompute"]["tokens_per_s"]
                                         for k, v in ok.items() if k != "trl_precompute"}
    if a.out:
        common.write_json_atomic(Path(a.out), result)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "step_s"} for k, v in c.items()}, indent=1))
    print(json.dumps(result.get("vs_trl_tokens_per_s", {})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
