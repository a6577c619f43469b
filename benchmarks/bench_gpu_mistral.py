"""Safe-MM-DPO training step on a Mistral-7B-architecture policy on one GPU: LoRA, bf16, activation
checkpointing, the precompute mode (only the policy resident; reference log-probs and RM margins are inputs).

Random weights from `MistralConfig()` defaults (7.24B parameters), built on the GPU directly in bf16, nothing
downloaded. Reports tokens/s, model-FLOPs utilisation (MFU), hardware-FLOPs utilisation (HFU), peak memory and
the largest micro-batch (pairs) that fits. Writes JSON after every phase, so a run cut short still leaves figures.

Phases, in order (each appended to `phases_done` once run; a phase that would start after `--budget-s` is skipped):
  seed_batch  precompute mode at `--pairs` (halved until it fits): warm-up, then `--steps` timed steps.
  online      (`--online`, the default; `--no-online` skips it) the trainer's online mode at the same micro-batch:
              two reward models (helpful, cost: `MistralForSequenceClassification`, num_labels=1, bf16, random
              weights, eval, frozen) are built next to the policy, and every step first computes under no_grad the
              reference sequence log-probs (the policy with its LoRA adapter disabled, response-only logits) and
              both RMs' scores (last token) on all 2·pairs sequences, then takes the same policy step.
              Writes `online` (same figures as seed_batch, or {"oom": true}) and
              `ratios` = {mem_precompute_over_online, time_precompute_over_online, target: 0.5, met}.
              The RMs are freed before the next phase.
  max_batch   largest precompute micro-batch that fits: double until OOM, then bisect (one timed step per trial).
Peak memory is CUDA max_memory_allocated (reset before each phase) on a GPU; on CPU (`--tiny`) it is the process's
lifetime peak RSS, so the CPU ratios mean nothing (`memory_kind` in the JSON says which).

Log-probs are taken on the response only, as the trainer does (`safealign.dpo.data.sequence_logps`): the model
returns logits for the last response_len+1 positions (`logits_to_keep`) and the float32 log-softmax covers only
those. `--all-logits` restores the old behaviour (logits and log-softmax over every position, prompt masked out
afterwards) so the two can be compared on a GPU; the loss is the same either way.

    python benchmarks/bench_gpu_mistral.py --out $OUT/gpu_mistral.json --budget-s 400   # on the GPU machine
    python benchmarks/bench_gpu_mistral.py --tiny --out /tmp/g.json             # CPU check, tiny MistralConfig

FLOP accounting (T = tokens processed in the step, N = parameters in matmuls = all parameters minus the input
embedding, lm_head included; N_lora = trainable LoRA parameters; L layers, d model width, S sequence length):
  forward               2·N·T + attention 2·L·S·d·T (QKᵀ and AV, causal half of 4·L·S·d·T)
  backward              2·N·T (gradients w.r.t. activations through the frozen weights; no weight gradients
                        for frozen weights) + 4·N_lora·T + 2× attention forward
  recompute (checkpointing) one more forward
  model FLOPs  = 4·N·T + 4·N_lora·T + 3·attn  (what the step must do: MFU, the usual convention)
  hardware FLOPs = model FLOPs + forward recompute = 6·N·T + ... (what the GPU did: HFU)
Full fine-tuning would be 6·N·T model FLOPs; LoRA skips the frozen weight gradients (≈ a third of it).
MFU = model FLOPs / step time / peak; peak = 989 TFLOP/s dense bf16 (H100/H200 SXM datasheet).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def _losses():
    """safealign.losses from the working tree (only torch needed); the same formulas inline as a fallback."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    try:
        from safealign import losses  # type: ignore

        return losses
    except Exception as err:  # noqa: BLE001 - the GPU image may lack the package's other deps; losses need none
        print(f"[warn] safealign.losses not importable ({err}); using inline copies", flush=True)
        return None


LOSSES = _losses()


def safe_mm_dpo(pc, pr, rc, rr, d_h, d_s, beta=0.1, w=0.5, k=0.5, lam=1.0, kl_coeff=0.1, n_tok=None):
    """Safe-MM-DPO loss on one policy forward; the safety pair is the helpful pair swapped for half the batch."""
    if LOSSES is not None:
        b_h = LOSSES.dynamic_beta(d_h, beta, w, k)
        b_s = LOSSES.dynamic_beta(d_s, beta, w, k)
        h = LOSSES.dpo_logits(pc, pr, rc, rr)
        kl = LOSSES.kl_penalty(pc, rc, n_tok)
        return LOSSES.safe_mm_dpo_loss(h, -h, b_h, b_s, lam, kl, kl_coeff)["loss"]
    b_h = (beta * (1 + w * (1 - torch.exp(-k * d_h)))).clamp(1e-3, beta * (1 + w))
    b_s = (beta * (1 + w * (1 - torch.exp(-k * d_s)))).clamp(1e-3, beta * (1 + w))
    h = (pc - rc) - (pr - rr)
    r = (rc - pc) / n_tok
    kl = (torch.expm1(r) - r).mean()
    return ((-F.logsigmoid(b_h * h)).mean() + lam * (-F.logsigmoid(-b_s * h)).mean()) / (1 + lam) + kl_coeff * kl


def build_policy(tiny: bool, device: torch.device, dtype, lora_r: int, checkpointing: bool):
    from peft import LoraConfig, get_peft_model
    from transformers import MistralForCausalLM

    cfg = _mistral_config(tiny)
    t0 = time.perf_counter()
    model = _build_on(MistralForCausalLM, cfg, device, dtype)
    model.config.use_cache = False
    if checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable({"use_reentrant": False})
    n_total = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()
    lcfg = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    with warnings.catch_warnings():  # peft reads the deprecated `is_gradient_checkpointing` (transformers 5.2x)
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        model = get_peft_model(model, lcfg)
    model.train()
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = dict(params_total=n_total, params_matmul=n_total - n_embed, params_lora=n_lora,
                layers=cfg.num_hidden_layers, hidden=cfg.hidden_size, vocab=cfg.vocab_size,
                build_s=round(time.perf_counter() - t0, 2))
    return model, info


def _mistral_config(tiny: bool):
    from transformers import MistralConfig

    if tiny:
        cfg = MistralConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024)
    else:
        cfg = MistralConfig()  # Mistral-7B-v0.1 architecture
    cfg.use_cache = False
    return cfg


def _build_on(cls, cfg, device, dtype):
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # weights are created on the GPU: no 28 GB fp32 copy on the host
            model = cls(cfg)
    finally:
        torch.set_default_dtype(prev)
    return model.to(dtype)


def build_reward_models(tiny: bool, device: torch.device, dtype) -> tuple:
    """Helpful and cost RMs for online mode: the policy's architecture with a scalar head, random, frozen."""
    from transformers import MistralForSequenceClassification

    rms = []
    for _ in range(2):
        cfg = _mistral_config(tiny)
        cfg.num_labels = 1
        cfg.pad_token_id = 0  # batches here hold no pad (ids >= 3): the score is read at the last position
        rm = _build_on(MistralForSequenceClassification, cfg, device, dtype)
        rm.config.use_cache = False
        rm.eval().requires_grad_(False)
        rms.append(rm)
    return tuple(rms)


def response_logps(model, ids: torch.Tensor, prompt_len: int, all_logits: bool = False) -> torch.Tensor:
    """Sum of log π(y_t | x, y_<t) over the response tokens ids[:, prompt_len:], per sequence (float32).

    Default: logits for the last response_len+1 positions only (`logits_to_keep`, as `sequence_logps` in
    safealign.dpo.data); `all_logits`: logits and log-softmax over every position, prompt masked out (the old way).
    """
    seq = ids.shape[1]
    if all_logits:
        logits = model(input_ids=ids).logits[:, :-1]  # (N, S-1, V)
        logp = torch.gather(logits.float().log_softmax(-1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        mask = torch.zeros_like(logp)
        mask[:, prompt_len - 1:] = 1.0  # position t predicts token t+1: response targets from prompt_len - 1
        return (logp * mask).sum(-1)
    keep = seq - prompt_len + 1  # positions prompt_len-1 .. S-1; the last one predicts nothing
    logits = model(input_ids=ids, logits_to_keep=keep).logits
    logits = logits[:, -keep:][:, :-1]  # a model that ignores logits_to_keep returns every position: same window
    logp = torch.gather(logits.float().log_softmax(-1), 2, ids[:, prompt_len:].unsqueeze(-1)).squeeze(-1)
    return logp.sum(-1)


def online_inputs(model, rms, batch, prompt_len: int, all_logits: bool = False):
    """The online mode's per-step no-grad work: reference log-probs (adapter off) and RM margins -> a batch."""
    ids, loss_mask, _, _, _ = batch
    pairs = ids.shape[0] // 2
    with torch.no_grad():
        with model.disable_adapter():
            ref = response_logps(model, ids, prompt_len, all_logits).float()
        helpful, cost = (rm(input_ids=ids).logits.squeeze(-1).float() for rm in rms)  # (2P,) each, last token
    d_h = helpful[:pairs] - helpful[pairs:]  # chosen block first
    d_s = cost[pairs:] - cost[:pairs]  # R_S = -cost: cost_l - cost_w
    return ids, loss_mask, ref, d_h, d_s


def make_batch(pairs: int, prompt_len: int, resp_len: int, vocab: int, device, gen: torch.Generator):
    """`pairs` preference pairs -> 2·pairs sequences (chosen block then rejected block), no padding."""
    seq = prompt_len + resp_len
    ids = torch.randint(3, vocab, (2 * pairs, seq), generator=gen).to(device)
    loss_mask = torch.zeros(2 * pairs, seq - 1, device=device)
    loss_mask[:, prompt_len - 1:] = 1.0  # predicting response tokens only
    ref = -torch.rand(2 * pairs, generator=gen).to(device) * 5 * resp_len  # precomputed reference log-probs
    d_h = torch.randn(pairs, generator=gen).to(device)
    d_s = torch.randn(pairs, generator=gen).to(device)
    return ids, loss_mask, ref, d_h, d_s


def train_step(model, opt, batch, prompt_len: int, all_logits: bool = False, rms=None):
    """One optimizer step; with `rms` (online mode) the reference and RM margins are computed first."""
    if rms is not None:
        batch = online_inputs(model, rms, batch, prompt_len, all_logits)
    ids, loss_mask, ref, d_h, d_s = batch
    pairs = ids.shape[0] // 2
    seq_logp = response_logps(model, ids, prompt_len, all_logits)  # (2P,)
    n_tok = loss_mask.sum(-1)[:pairs]
    loss = safe_mm_dpo(seq_logp[:pairs], seq_logp[pairs:], ref[:pairs], ref[pairs:], d_h, d_s, n_tok=n_tok)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def flops_per_step(info: dict, tokens: int, seq: int) -> dict:
    n, n_lora = info["params_matmul"], info["params_lora"]
    attn_fwd = 2 * info["layers"] * seq * info["hidden"] * tokens  # causal: half of 4·L·S·d per token
    fwd = 2 * n * tokens + attn_fwd
    model_flops = fwd + (2 * n * tokens + 2 * attn_fwd) + 4 * n_lora * tokens
    return {"model_flops": model_flops, "hardware_flops": model_flops + fwd}


class OOM(Exception):
    pass


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def timed_steps(model, opt, pairs, args, device, steps, gen, rms=None):
    """Run `steps` steps at micro-batch `pairs`; returns per-step seconds and peak memory, or raises OOM."""
    times = []
    oom = False
    try:
        if args.simulate_oom_above and pairs > args.simulate_oom_above:
            raise RuntimeError("CUDA out of memory (simulated by --simulate-oom-above)")
        batch = make_batch(pairs, args.prompt_len, args.response_len, model.config.vocab_size, device, gen)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            _sync(device)
            t0 = time.perf_counter()
            train_step(model, opt, batch, args.prompt_len, args.all_logits, rms)
            _sync(device)
            times.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _rss_peak()
        return times, peak
    except RuntimeError as err:
        if not _is_oom(err):
            raise
        oom = True
    if oom:  # outside the except block, so the traceback's frames (and their tensors) are gone
        opt.zero_grad(set_to_none=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise OOM(pairs)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss_peak() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny MistralConfig (CPU check of the script)")
    ap.add_argument("--out", default="gpu_mistral.json")
    ap.add_argument("--pairs", type=int, default=16, help="per-device micro-batch in preference pairs (seed: 16)")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--response-len", type=int, default=384)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--max-pairs", type=int, default=512, help="upper end of the largest-batch search")
    ap.add_argument("--all-logits", action="store_true",
                    help="logits and log-softmax over every position (the old way) instead of the response only")
    ap.add_argument("--online", action=argparse.BooleanOptionalAction, default=True,
                    help="also time online mode (reference + two RMs computed every step) at the seed micro-batch")
    ap.add_argument("--simulate-oom-above", type=int, default=0, help=argparse.SUPPRESS)  # tests the OOM path
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting new phases after this")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16
    seq = args.prompt_len + args.response_len
    result: dict = {"args": vars(args), "device": _device_name(device), "torch": torch.__version__,
                    "python": platform.python_version(), "phases_done": []}
    try:
        import peft
        import transformers

        result.update(transformers=transformers.__version__, peft=peft.__version__)
    except ImportError as err:
        result["error"] = f"missing package: {err}"
        _write(args.out, result)
        return 1
    result["memory_kind"] = ("cuda_max_memory_allocated (reset before each phase)" if device.type == "cuda" else
                             "cpu_rss_peak (ru_maxrss: process-lifetime peak, not per phase; ratios meaningless)")
    peak_tflops = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in result["device"]), None)
    result["peak_bf16_tflops"] = peak_tflops

    model, info = build_policy(args.tiny, device, dtype, args.lora_r, checkpointing=True)
    result["model"] = info
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-7)
    gen = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        result["weights_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
    print(f"[build] {info} on {result['device']}", flush=True)
    _write(args.out, result)

    def figures(pairs, times, peak):
        tokens = 2 * pairs * seq
        med = sorted(times)[len(times) // 2]
        fl = flops_per_step(info, tokens, seq)
        out = {"pairs": pairs, "sequences": 2 * pairs, "tokens_per_step": tokens, "step_s_median": round(med, 4),
               "step_s_all": [round(t, 4) for t in times], "tokens_per_s": round(tokens / med, 1),
               "pairs_per_s": round(pairs / med, 2), "peak_mem_gib": round(peak / 2**30, 2), "peak_mem_bytes": peak,
               "model_tflops_per_s": round(fl["model_flops"] / med / 1e12, 1),
               "hardware_tflops_per_s": round(fl["hardware_flops"] / med / 1e12, 1)}
        if peak_tflops:
            out["mfu"] = round(fl["model_flops"] / med / 1e12 / peak_tflops, 4)
            out["hfu"] = round(fl["hardware_flops"] / med / 1e12 / peak_tflops, 4)
        return out

    # Phase 1: the seed's micro-batch (halved until it fits), warm-up then timed steps.
    pairs = args.pairs
    while pairs >= 1:
        try:
            timed_steps(model, opt, pairs, args, device, args.warmup, gen)
            times, peak = timed_steps(model, opt, pairs, args, device, args.steps, gen)
            result["seed_batch"] = figures(pairs, times, peak)
            break
        except OOM:
            print(f"[seed] OOM at {pairs} pairs", flush=True)
            result.setdefault("seed_batch_oom", []).append(pairs)
            pairs //= 2
    print(f"[seed] {result.get('seed_batch')}", flush=True)
    result["phases_done"].append("seed_batch")
    _write(args.out, result)

    # Phase 1b: online mode at the same micro-batch (reference = adapter off, two RMs resident and run every step).
    if args.online and pairs >= 1:
        if time.perf_counter() - t_start >= args.budget_s:
            result["online"] = {"skipped": f"over --budget-s {args.budget_s} before the phase started"}
        else:
            try:
                _online_phase(model, opt, pairs, args, device, dtype, gen, result, figures)
            except Exception as err:  # noqa: BLE001 - keep the largest-batch phase; the error is in the JSON
                result["online"] = {"error": repr(err)[:1000]}
                opt.zero_grad(set_to_none=True)
                gc.collect()
            result["phases_done"].append("online")
        print(f"[online] {result.get('online')} ratios {result.get('ratios')}", flush=True)
        _write(args.out, result)

    # Phase 2: largest micro-batch that fits: double until OOM, then bisect (one timed step per trial).
    trials = result["max_batch_trials"] = []
    ok, bad = (pairs if pairs >= 1 else 0), None
    cand = max(1, ok) * 2
    while cand <= args.max_pairs and time.perf_counter() - t_start < args.budget_s:
        try:
            times, peak = timed_steps(model, opt, cand, args, device, 1, gen)
            trials.append(figures(cand, times, peak))
            ok = cand
        except OOM:
            trials.append({"pairs": cand, "oom": True})
            bad = cand
        print(f"[max] {trials[-1]}", flush=True)
        _write(args.out, result)
        if bad is None:
            cand = ok * 2
        elif bad - ok <= max(1, ok // 8):
            break
        else:
            cand = (ok + bad) // 2
    result["max_pairs_fit"] = ok
    result["max_pairs_first_oom"] = bad
    result["max_pairs_search_complete"] = bad is not None and bad - ok <= max(1, ok // 8)
    result["phases_done"].append("max_batch")
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    _write(args.out, result)
    keys = ("device", "seed_batch", "online", "ratios", "max_pairs_fit", "max_pairs_first_oom", "wall_s")
    print(json.dumps({k: result.get(k) for k in keys}, indent=1), flush=True)
    return 0


def _online_phase(model, opt, pairs, args, device, dtype, gen, result, figures) -> None:
    """Build the two RMs, time online steps at `pairs`, record `online` and `ratios`, free the RMs."""
    rms = None
    oom = False
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            rms = build_reward_models(args.tiny, device, dtype)
        except RuntimeError as err:
            if not _is_oom(err):
                raise
            oom = True
        if oom:
            result["online"] = {"oom": True, "pairs": pairs, "stage": "building the reward models"}
            return
        rm_build_s = round(time.perf_counter() - t0, 2)
        rm_gib = (round(torch.cuda.memory_allocated() / 2**30, 2) if device.type == "cuda" else None)
        try:
            timed_steps(model, opt, pairs, args, device, args.warmup, gen, rms=rms)
            times, peak = timed_steps(model, opt, pairs, args, device, args.steps, gen, rms=rms)
        except OOM:
            result["online"] = {"oom": True, "pairs": pairs, "stage": "steps"}
            return
        online = result["online"] = figures(pairs, times, peak)
        online.update(rm_build_s=rm_build_s, allocated_after_rm_build_gib=rm_gib,
                      rm_params=sum(p.numel() for p in rms[0].parameters()),
                      flops_note="model/hardware TFLOP/s and MFU/HFU count the policy step only, not the "
                                 "no-grad reference and RM forwards (about 3 more forwards per step)")
        seed = result.get("seed_batch")
        if seed and seed["pairs"] == pairs:
            mem = seed["peak_mem_bytes"] / peak
            tim = seed["step_s_median"] / online["step_s_median"]
            result["ratios"] = {"mem_precompute_over_online": round(mem, 4),
                                "time_precompute_over_online": round(tim, 4), "target": 0.5,
                                "met": bool(mem <= 0.5 and tim <= 0.5), "memory_kind": result.get("memory_kind")}
    finally:
        del rms
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _write(path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
