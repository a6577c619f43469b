"""Training-step benchmark: safealign's Safe-MM-DPO trainer against itself (plain DPO, online mode) and TRL.

Configurations (same policy weights, same records, same batch and lengths, same optimizer settings):
  safe_mm_dpo      Safe-MM-DPO, precompute pass (the default): only the policy resident
  dpo              plain DPO on the same trainer (SafeMMDPOTrainer, algorithm=dpo), precompute pass
  safe_mm_dpo_online  Safe-MM-DPO online: reference + helpful RM + cost model resident, computed every step
  trl_dpo          TRL DPOTrainer with its defaults (reference model resident, forward every step)
  trl_dpo_precompute  TRL DPOTrainer with precompute_ref_log_probs=True

A step = one optimizer step (gradient accumulation 1): forward, loss, backward, clip, AdamW, the trainers'
callbacks (λ update). It is timed by a TrainerCallback from on_step_begin to on_step_end inside
`trainer.train()`, the first `--warmup` steps discarded. Every configuration runs in its own subprocess (its own
peak RSS), and the rounds are interleaved (round r runs the configurations in a rotated order) so that load from
other processes on the machine falls on all configurations alike. The one-off passes (safealign's precompute,
TRL's reference pre-pass) are timed separately and are not in the step time.

    python benchmarks/bench_train_step.py                      # CPU default: ~30M Llama, 4 pairs, 64+64 tokens
    python benchmarks/bench_train_step.py --quick              # smoke run (tiny model)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CONFIGS = ("safe_mm_dpo", "dpo", "safe_mm_dpo_online", "trl_dpo", "trl_dpo_precompute")
SAFEALIGN = {"safe_mm_dpo": ("safe_mm_dpo", True), "dpo": ("dpo", True),
             "safe_mm_dpo_online": ("safe_mm_dpo", False)}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# (numerator, denominator, metric, target): the ratio must be ≤ target
TARGETS = [
    ("safe_mm_dpo", "dpo", "step_s", 1.05), ("safe_mm_dpo", "dpo", "mem", 1.05),
    ("safe_mm_dpo", "safe_mm_dpo_online", "step_s", 0.5), ("safe_mm_dpo", "safe_mm_dpo_online", "mem", 0.5),
    ("safe_mm_dpo", "trl_dpo_precompute", "step_s", 1.0), ("safe_mm_dpo", "trl_dpo", "step_s", None),
    ("safe_mm_dpo", "trl_dpo_precompute", "mem", None), ("safe_mm_dpo", "trl_dpo", "mem", None),
]


def parse_args(argv):
    ap = common.bench_parser(__doc__, "torch threads in each worker")
    ap.add_argument("--batch", type=int, default=None, help="pairs per step (default 4; quick 2)")
    ap.add_argument("--prompt-len", type=int, default=None, help="prompt words = tokens (default 64)")
    ap.add_argument("--response-len", type=int, default=None, help="response tokens (default 64)")
    ap.add_argument("--vary", action="store_true", help="lengths uniform in [½,1]×max instead of fixed")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; quick 1)")
    ap.add_argument("--warmup", type=int, default=None, help="discarded steps per worker (default 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per worker (default 4)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    ap.add_argument("--lora", action="store_true", help="LoRA r=16 on all linear layers (policy); the online "
                    "reference is then the policy with its adapter disabled, as in `safealign train-dpo`")
    ap.add_argument("--checkpointing", action="store_true",
                    help="activation checkpointing on the trained policy (every configuration alike)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler over the timed steps: top ops per config")
    ap.add_argument("--memory-breakdown", action="store_true",
                    help="after the timed rounds, one more (untimed) worker per configuration under torch.profiler's "
                         "memory timeline: peak of live tensor bytes by category (the CPU analogue of CUDA max "
                         "allocated: no allocator slack), and the memory ratios on it")
    # internal (worker) flags
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--breakdown", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help="keep models + caches here and reuse them on reruns (same sizes!)")
    a = common.parse_bench_args(ap, argv)
    q = a.quick
    a.batch = a.batch or (2 if q else 4)
    a.prompt_len = a.prompt_len or (16 if q else 64)
    a.response_len = a.response_len or (16 if q else 64)
    a.rounds = a.rounds or 1 if q else (a.rounds or 3)
    a.warmup = a.warmup if a.warmup is not None else (1 if q else 2)
    a.steps = a.steps or (2 if q else 4)
    a.configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    bad = [c for c in a.configs if c not in CONFIGS]
    if bad:
        ap.error(f"--configs: unknown {bad}; choose from {', '.join(CONFIGS)}")
    return a


def _lengths(a):
    # the chat template adds ~10 tokens to the prompt; eos ends the response
    return a.prompt_len + a.response_len + 32, a.prompt_len + 16


# ----------------------------------------------------------------------------- setup (own subprocess)
def setup(a) -> dict:
    """Save models + records, run safealign's precompute pass for the two precompute configurations (timed)."""
    from safealign.dpo.precompute import precompute
    from safealign.fileio import write_jsonl
    from safealign.models.loading import load_tokenizer
    from safealign.threads import apply_num_threads

    apply_num_threads(a.threads)  # torch, OpenMP/BLAS and tokenizers pools, and any child process
    wd = Path(a.workdir)
    size = common.SIZES[a.size]
    info = common.save_models(wd, size)
    n = a.batch * (a.warmup + a.steps)  # exactly one epoch of steps: every pass sees the same records
    records = common.synthetic_records(n, a.prompt_len, a.response_len, size["vocab"], seed=0, vary=a.vary)
    write_jsonl(wd / "records.jsonl", records)
    tok = load_tokenizer(info["paths"]["policy"])
    max_length, max_prompt = _lengths(a)
    pre = {}
    for name, helpful, harmless in (("safe_mm_dpo", "helpful_rm", "harmless_rm"), ("dpo", None, None)):
        t0 = time.perf_counter()
        precompute(records, info["paths"]["policy"], tok, info["paths"].get(helpful), info["paths"].get(harmless),
                   wd / "cache", max_length=max_length, max_prompt_length=max_prompt, name=name)
        pre[name] = round(time.perf_counter() - t0, 3)
    info.update(records=n, precompute_s=pre,
                tokens_per_pair=len(tok(records[0]["prompt"])["input_ids"]) + a.response_len)
    return info


# ----------------------------------------------------------------------------- one configuration (own subprocess)
def _step_timer():
    import time as _t

    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.cpu_times, self._t0, self._c0 = [], [], None, None

        def on_step_begin(self, args, state, control, **kw):
            self._t0, self._c0 = _t.perf_counter(), _t.process_time()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(_t.perf_counter() - self._t0)
            self.cpu_times.append(_t.process_time() - self._c0)

    return StepTimer()


def worker(a) -> dict:
    # Everything any configuration imports is imported first, so the baseline RSS is the same for all.
    import datasets  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from safealign.dpo.config import SafeDPOConfig
    from safealign.dpo.data import PairCollator, PairDataset, tokenize_records
    from safealign.dpo.precompute import precompute
    from safealign.dpo.trainer import SafeMMDPOTrainer
    from safealign.fileio import read_jsonl
    from safealign.models.loading import load_causal_lm, load_tokenizer
    from safealign.rm.scoring import load_scorer
    from safealign.threads import apply_num_threads

    apply_num_threads(a.threads)  # torch, OpenMP/BLAS and tokenizers pools, and any child process
    wd = Path(a.workdir)
    paths = {k: str(wd / k) for k in ("policy", "helpful_rm", "harmless_rm")}
    records = read_jsonl(wd / "records.jsonl")
    tok = load_tokenizer(paths["policy"])
    max_length, max_prompt = _lengths(a)
    baseline = common.current_rss_mb()
    common.reset_cuda_peak()
    cuda = torch.cuda.is_available()
    out_dir = tempfile.mkdtemp(prefix="bench-out-")
    common_args = dict(output_dir=out_dir, per_device_train_batch_size=a.batch, gradient_accumulation_steps=1,
                       max_steps=a.warmup + a.steps, learning_rate=1e-5, warmup_steps=0, max_grad_norm=1.0,
                       logging_steps=10**6, save_strategy="no", eval_strategy="no", report_to="none",
                       dataloader_num_workers=0, seed=0, use_cpu=not cuda, disable_tqdm=True,
                       bf16=cuda and torch.cuda.is_bf16_supported(), activation_checkpointing=a.checkpointing)

    def with_checkpointing_names(cls) -> dict:  # the name the installed transformers takes (training.py decides)
        import dataclasses

        from safealign.training import checkpointing_keys

        return checkpointing_keys(common_args, {f.name for f in dataclasses.fields(cls)})

    t0 = time.perf_counter()
    if a.worker in SAFEALIGN:
        algorithm, pre = SAFEALIGN[a.worker]
        args = SafeDPOConfig(algorithm=algorithm, precompute=pre, max_length=max_length,
                             max_prompt_length=max_prompt, metric_for_best_model=None,
                             **with_checkpointing_names(SafeDPOConfig))
        cached = None
        if pre:  # cache hit: the setup ran the pass; this only reads the cache file
            helpful, harmless = (paths["helpful_rm"], paths["harmless_rm"]) if args.is_safe else (None, None)
            cached = precompute(records, paths["policy"], tok, helpful, harmless, wd / "cache",
                                max_length=max_length, max_prompt_length=max_prompt, name=algorithm)
        feats = tokenize_records(records, tok, max_length, max_prompt, cached, keep_text=not pre)
        policy = load_causal_lm(paths["policy"], dtype="float32")
        if a.lora:
            from safealign.models.loading import apply_lora

            policy = apply_lora(policy, r=16, alpha=32, dropout=0.0, target_modules=LORA_TARGETS)
        extra = {}
        if not pre:  # online: reference (none with LoRA: the adapter is disabled instead) and both judges resident
            extra = dict(ref_model=None if a.lora else load_causal_lm(paths["policy"], dtype="float32"),
                         helpful_scorer=load_scorer(paths["helpful_rm"], dtype="float32"),
                         cost_scorer=load_scorer(paths["harmless_rm"], dtype="float32"))
        trainer = SafeMMDPOTrainer(model=policy, args=args, train_dataset=PairDataset(feats),
                                   data_collator=PairCollator(tok.pad_token_id), processing_class=tok, **extra)
    else:
        from datasets import Dataset
        from transformers import AutoModelForCausalLM
        from trl import DPOConfig, DPOTrainer

        from safealign.chat import prompt_text, response_text

        rows = [{"prompt": prompt_text(tok, r["prompt"]),
                 "chosen": response_text(r[f"response_{r['better_response_id']}"]),
                 "rejected": response_text(r[f"response_{1 - r['better_response_id']}"])} for r in records]
        args = DPOConfig(beta=0.1, max_length=max_length, precompute_ref_log_probs=a.worker == "trl_dpo_precompute",
                         **with_checkpointing_names(DPOConfig))
        # ref_model=None: TRL loads the reference from the policy's saved path (defaults), or, with
        # precompute_ref_log_probs, runs the policy itself over the data once before training.
        policy = AutoModelForCausalLM.from_pretrained(paths["policy"], dtype=torch.float32)
        peft_config = None
        if a.lora:
            from peft import LoraConfig

            peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                                     task_type="CAUSAL_LM")
        trainer = DPOTrainer(model=policy, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                             peft_config=peft_config)
    init_s = time.perf_counter() - t0
    stages = {"after_init_mb": common.current_rss_mb(), "peak_before_train_mb": common.peak_rss_mb()}
    timer = _step_timer()
    trainer.add_callback(timer)
    top = None
    if a.breakdown:
        return {"config": a.worker, **live_tensor_peak(trainer)}
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.train()
        top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18)
    else:
        trainer.train()
    times = timer.times[a.warmup:]
    stages["after_train_mb"] = common.current_rss_mb()
    res = {"profile": top, "config": a.worker, "rss_stages": stages, "step_times": times, "step_cpu_times": timer.cpu_times[a.warmup:], "init_s": init_s, **common.memory_reading(baseline),
           "policy_params": common.param_count(policy)}
    return res


def live_tensor_peak(trainer) -> dict:
    """Peak of live tensor bytes over `trainer.train()` and its composition by category (MiB).

    torch.profiler's memory timeline sees every tensor an op creates, frees or reads (weights loaded before the
    profile count from their first use), so its peak is what the trainer holds at its worst moment, without
    the C allocator's retained free memory that peak RSS also counts: on a CPU it is the analogue of
    `torch.cuda.max_memory_allocated`.
    """
    import warnings

    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import _CATEGORY_TO_INDEX

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        trainer.train()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA snapshots; the only CPU timeline
        path = Path(tmp, "timeline.json")
        prof.export_memory_timeline(str(path), device="cpu")
        _times, sizes = json.loads(path.read_text())
    names = ["-"] * (len(_CATEGORY_TO_INDEX) + 1)  # the timeline's column i + 1 holds category i; column 0 is unused
    for cat, i in _CATEGORY_TO_INDEX.items():
        names[i + 1] = cat.name.lower() if cat is not None else "unknown"
    totals = [sum(row) for row in sizes]
    i = max(range(len(totals)), key=totals.__getitem__)
    return {"live_peak_mb": totals[i] / 2**20,
            "live_by_category_mb": {n: v / 2**20 for n, v in zip(names, sizes[i]) if v}}


# ----------------------------------------------------------------------------- orchestration
def aggregate(a, setup_info: dict, runs: dict, breakdown: dict | None = None) -> dict:
    breakdown = breakdown or {}
    configs = {}
    for c, rs in runs.items():
        times = [t for r in rs for t in r["step_times"]]
        st = common.summarize(times)
        mem = [r["peak_mem_mb"] for r in rs]
        added = [r.get("added_mem_mb") for r in rs if r.get("added_mem_mb") is not None]
        cpu = common.summarize([t for r in rs for t in r.get("step_cpu_times", [])])
        configs[c] = {"step_s": st, "step_cpu_s": cpu, "samples_per_s": a.batch / st["median"] if st.get("median") else None,
                      "peak_mem_mb": max(mem), "added_mem_mb": max(added) if added else None,
                      "baseline_rss_mb": min(r.get("baseline_rss_mb", 0) for r in rs),
                      "memory_kind": rs[0]["memory_kind"], "init_s": common.summarize([r["init_s"] for r in rs]),
                      "per_round_median_s": [common.summarize(r["step_times"])["median"] for r in rs]}
        if c in breakdown:
            configs[c].update({k: breakdown[c][k] for k in ("live_peak_mb", "live_by_category_mb")})
    ratios = []
    targets = []
    for num, den, metric, target in TARGETS:  # every time ratio on both clocks: wall and process CPU time
        targets += [(num, den, "step_cpu_s", target), (num, den, metric, target)] if metric == "step_s" else \
            [(num, den, metric, target)]
        if metric == "mem" and breakdown:
            targets.append((num, den, "mem_live", target))
    for num, den, metric, target in targets:
        if num not in configs or den not in configs:
            continue
        if metric in ("step_s", "step_cpu_s"):
            value = configs[num][metric]["median"] / configs[den][metric]["median"]
        elif metric == "mem_live":  # peak live tensor bytes (profiler): the allocator-independent reading
            if "live_peak_mb" not in configs[num] or "live_peak_mb" not in configs[den]:
                continue
            value = configs[num]["live_peak_mb"] / configs[den]["live_peak_mb"]
        else:  # memory the configuration added over the interpreter + libraries (CPU), or CUDA peak (GPU)
            key = "added_mem_mb" if configs[num]["added_mem_mb"] is not None else "peak_mem_mb"
            value = configs[num][key] / configs[den][key]
        ratios.append({"ratio": f"{num} / {den}", "metric": metric, "value": value, "target_le": target,
                       "met": None if target is None else value <= target})
    return {"benchmark": "train_step", "args": {k: v for k, v in vars(a).items() if k not in ("json_out", "worker",
                                                                                          "setup", "workdir")},
            "setup": setup_info, "configs": configs, "ratios": ratios}


def markdown(res: dict) -> str:
    a = res["args"]
    s = res["setup"]
    head = (f"Policy: Llama, {s['policy_params'] / 1e6:.1f}M parameters ({a['size']}"
            f"{', LoRA r=16 on all linear layers' if a.get('lora') else ', full fine-tuning'}); {a['batch']} pairs/step, "
            f"prompt {a['prompt_len']} + response {a['response_len']} tokens (+ template); {a['rounds']} rounds × "
            f"{a['steps']} timed steps after {a['warmup']} warm-up; memory = "
            f"{next(iter(res['configs'].values()))['memory_kind']}.")
    rows = []
    for c, v in res["configs"].items():
        st = v["step_s"]
        cpu = v.get("step_cpu_s") or {}
        rows.append([c, st["median"], f"{st['p25']:.3g}–{st['p75']:.3g}", cpu.get("median"),
                     f"{cpu['p25']:.3g}–{cpu['p75']:.3g}" if cpu.get("n") else "–", st["n"], v["samples_per_s"],
                     v["peak_mem_mb"], v["added_mem_mb"], v["init_s"]["median"]])
    t1 = common.md_table(["config", "step wall s (median)", "wall IQR", "step CPU s (median)", "CPU IQR", "n",
                          "samples/s (wall)", "peak MiB", "added MiB", "init s"], rows)
    rr = [[r["ratio"], r["metric"], r["value"], "≤ " + str(r["target_le"]) if r["target_le"] is not None else "–",
           {True: "yes", False: "**no**", None: "–"}[r["met"]]] for r in res["ratios"]]
    t2 = common.md_table(["ratio", "metric", "value", "target", "met"], rr)
    pre = ", ".join(f"{k} {v} s" for k, v in s.get("precompute_s", {}).items())
    out = f"{head}\n\n{t1}\n\n{t2}\n\nsafealign precompute pass (one-off, {s['records']} records): {pre}\n"
    live = {c: v for c, v in res["configs"].items() if "live_peak_mb" in v}
    if live:
        cats = sorted({k for v in live.values() for k in v["live_by_category_mb"]})
        rows = [[c, v["live_peak_mb"], v["added_mem_mb"]] + [v["live_by_category_mb"].get(k, 0.0) for k in cats]
                for c, v in live.items()]
        out += ("\nLive tensors at the peak (torch.profiler memory timeline, one untimed run per configuration; "
                "`parameter`: the model weights, frozen or not; `activation`: what the "
                "forward keeps for backward), MiB:\n\n" + common.md_table(["config", "live peak", "RSS added"] + cats, rows) + "\n")
    return out


def run(a) -> dict:
    script = Path(__file__).resolve()
    flags = ["--size", a.size, "--batch", str(a.batch), "--prompt-len", str(a.prompt_len), "--response-len",
             str(a.response_len), "--warmup", str(a.warmup), "--steps", str(a.steps), "--threads", str(a.threads)]
    if a.vary:
        flags.append("--vary")
    if a.lora:
        flags.append("--lora")
    if a.checkpointing:
        flags.append("--checkpointing")
    if a.profile:
        flags.append("--profile")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        wd = a.workdir or tmp  # --workdir keeps the models/caches for reruns (setup is skipped when present)
        if a.workdir and Path(wd, "setup.json").is_file():
            setup_info = json.loads(Path(wd, "setup.json").read_text())
        else:
            print(f"[train_step] setup: models, records, precompute ({a.size})", flush=True)
            setup_info = common.run_worker(script, ["--setup", "--workdir", wd, *flags])
            Path(wd, "setup.json").write_text(json.dumps(setup_info))
        runs: dict[str, list] = {c: [] for c in a.configs}
        for r in range(a.rounds):
            order = a.configs[r % len(a.configs):] + a.configs[: r % len(a.configs)]  # rotate: fair contention
            for c in order:
                res = common.run_worker(script, ["--worker", c, "--workdir", wd, *flags])
                runs[c].append(res)
                if res.get("profile"):
                    print(f"[train_step] profile of {c}:\n{res.pop('profile')}", flush=True)
                st = common.summarize(res["step_times"])
                print(f"[train_step] round {r + 1}/{a.rounds} {c:20s} step {st['median']:.4f} s  "
                      f"peak {res['peak_mem_mb']:.0f} MiB", flush=True)
        breakdown = {}
        if a.memory_breakdown:  # untimed: the profiler slows the step several-fold
            for c in a.configs:
                breakdown[c] = common.run_worker(script, ["--worker", c, "--breakdown", "--workdir", wd, *flags])
                print(f"[train_step] live tensors {c:20s} peak {breakdown[c]['live_peak_mb']:.0f} MiB "
                      f"{ {k: round(v) for k, v in breakdown[c]['live_by_category_mb'].items()} }", flush=True)
    out = aggregate(a, setup_info, runs, breakdown)
    out["machine"] = common.machine_info()
    out["markdown"] = markdown(out)
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.setup or a.worker:
        res = setup(a) if a.setup else worker(a)
        Path(a.json_out).write_text(json.dumps(res))
        return 0
    res = run(a)
    print(res["markdown"])
    if a.out:
        common.write_json_atomic(Path(a.out), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
