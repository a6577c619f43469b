"""`safealign train-dpo`: precompute pass, Safe-MM-DPO training, held-out check, export.

Run layout (see docs/DESIGN.md): data `<run>/data`, output `<run>/models/aligned`, checkpoints
`<run>/checkpoints/dpo`, TensorBoard `<run>/logs/dpo`, precompute cache `<run>/cache/precompute`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from ..errors import SafeAlignError
from .config import SafeDPOConfig
from .data import PairCollator, PairDataset, load_records, tokenize_records

log = logging.getLogger(__name__)


def resolve_paths(cfg, data_dir=None, output_dir=None) -> dict:
    run = cfg.section("run")
    d: SafeDPOConfig = cfg.section("dpo")
    rd = Path(run.directory)
    data_dir = Path(data_dir or rd / "data")
    if d.policy_name_or_path:
        policy = d.policy_name_or_path
    elif (rd / "models" / "sft" / "config.json").is_file():
        policy = str(rd / "models" / "sft")
    else:
        from ..models.base import ensure_base_model

        policy = ensure_base_model(cfg, data_dir)
    # `dpo.output_dir` (the Trainer's checkpoint folder) when the config sets it (pipeline ablations, sweep)
    raw_ckpt = (cfg.raw.get("dpo") or {}).get("output_dir")
    ckpt = Path(raw_ckpt) if raw_ckpt else rd / "checkpoints" / "dpo"
    return {"run": rd, "data": data_dir, "output": Path(output_dir or rd / "models" / "aligned"),
            "checkpoints": ckpt, "logs": rd / "logs" / ckpt.name,
            "cache": rd / "cache" / "precompute", "policy": policy,
            "helpful_rm": d.helpful_rm_path or str(rd / "models" / "helpful_rm"),
            "harmless_rm": d.harmless_rm_path or str(rd / "models" / "harmless_rm")}


def _needed_judges(d: SafeDPOConfig, paths: dict) -> tuple[str | None, str | None]:
    """The judges to score with: δ_H (dynamic β) needs the helpful RM, the safe algorithms the cost model.
    A judge the algorithm does not need is still used when its folder exists, so the ablations share one
    precompute cache and log the same margins; a needed one that is missing is an error."""
    judges = []
    for what, key, needed in (("helpful reward model", "helpful", d.dynamic_beta), ("cost model", "harmless", d.is_safe)):
        p = paths[f"{key}_rm"]
        local = Path(p).is_absolute() or p.startswith(".") or str(Path(p)).startswith(str(paths["run"]))
        if Path(p).exists():
            judges.append(p)
        elif needed and local:
            raise SafeAlignError(f"{p}: {what} not found; train it first (`safealign train-rm --dimension "
                                 f"{key}`) or set dpo.{key}_rm_path")
        else:  # a needed judge given as a Hub id is loaded from the Hub
            judges.append(p if needed else None)
    return judges[0], judges[1]


def training_args(cfg, paths: dict) -> SafeDPOConfig:
    d: SafeDPOConfig = cfg.section("dpo")
    run = cfg.section("run")
    raw = cfg.raw.get("dpo") or {}
    report = [r for r in run.report_to if r != "none"]
    changes = {"output_dir": str(paths["checkpoints"]), "report_to": report or "none"}
    if "seed" not in raw:
        changes["seed"] = run.seed
    return dataclasses.replace(d, **changes)


def build_trainer(cfg, data_dir=None, output_dir=None):
    """Precompute (or load the online judges), load the policy, build the trainer.

    Returns (trainer, ctx) with ctx = {paths, args, tokenizer, records: {train, val}, cached: {train, val}}.
    """
    from ..models.loading import load_causal_lm, load_policy, load_tokenizer
    from .precompute import precompute
    from .trainer import SafeMMDPOTrainer

    paths = resolve_paths(cfg, data_dir, output_dir)
    args = training_args(cfg, paths)
    mcfg = cfg.section("model")
    helpful_path, harmless_path = _needed_judges(args, paths)
    records = {"train": load_records(paths["data"] / "train.jsonl")}
    val_file = paths["data"] / "val.jsonl"
    if val_file.is_file():
        records["val"] = load_records(val_file)
    tok = load_tokenizer(paths["policy"], revision=mcfg.revision, trust_remote_code=mcfg.trust_remote_code)

    cached = {}
    if args.precompute:
        with args.main_process_first(desc="precompute"):  # rank 0 computes, the others read its cache
            for name, recs in records.items():
                cached[name] = precompute(recs, paths["policy"], tok, helpful_path, harmless_path, paths["cache"],
                                          max_length=args.max_length, max_prompt_length=args.max_prompt_length,
                                          max_tokens_per_batch=args.precompute_tokens_per_batch,
                                          model_cfg=mcfg, name=name)
    online = not args.precompute
    feats = {name: tokenize_records(recs, tok, args.max_length, args.max_prompt_length, cached.get(name),
                                    keep_text=online)
             for name, recs in records.items()}

    policy = load_policy(mcfg, paths["policy"])
    ref_model = helpful_scorer = cost_scorer = None
    if online:
        from ..rm.scoring import load_scorer

        if not mcfg.use_lora:  # with LoRA the reference is the policy with its adapter disabled
            ref_model = load_causal_lm(paths["policy"], revision=mcfg.revision, dtype=mcfg.dtype,
                                       trust_remote_code=mcfg.trust_remote_code)
        helpful_scorer = load_scorer(helpful_path) if helpful_path else None
        cost_scorer = load_scorer(harmless_path) if harmless_path else None
    if args.jc_estimator == "on_policy" and args.is_safe and cost_scorer is None:
        from ..rm.scoring import load_scorer

        cost_scorer = load_scorer(harmless_path)  # resident for the on-policy J_C estimate
    if "val" not in records:
        args = dataclasses.replace(args, eval_strategy="no", metric_for_best_model=None, load_best_model_at_end=False)

    trainer = SafeMMDPOTrainer(model=policy, args=args, train_dataset=PairDataset(feats["train"]),
                               eval_dataset=PairDataset(feats["val"]) if "val" in feats else None,
                               data_collator=PairCollator(tok.pad_token_id), processing_class=tok,
                               ref_model=ref_model, helpful_scorer=helpful_scorer, cost_scorer=cost_scorer,
                               prompts=[r["prompt"] for r in records["train"]],
                               run_config=cfg.to_dict(["run", "model", "dpo"]))
    for cb in trainer.callback_handler.callbacks:  # TensorBoard events go to <run>/logs/<stage>
        if type(cb).__name__ == "TensorBoardCallback":
            cb.logging_dir = str(paths["logs"])
    ctx = {"paths": paths, "args": args, "tokenizer": tok, "records": records, "cached": cached,
           "helpful_rm": helpful_path, "harmless_rm": harmless_path}
    return trainer, ctx


def run_train_dpo(cfg, data_dir=None, output_dir=None, resume=None) -> dict:
    """Train the policy; returns the summary written to `<output>/train_summary.json`."""
    from .export import export_policy

    t0 = time.time()
    trainer, ctx = build_trainer(cfg, data_dir, output_dir)
    args, paths, tok = ctx["args"], ctx["paths"], ctx["tokenizer"]
    result = trainer.train(resume_from_checkpoint=resume)
    final_eval = trainer.evaluate() if "val" in ctx["records"] else {}

    summary = {"algorithm": args.algorithm, "policy_init": paths["policy"], "helpful_rm": ctx["helpful_rm"],
               "harmless_rm": ctx["harmless_rm"], "precompute": args.precompute, "jc_estimator": args.jc_estimator,
               "global_step": trainer.state.global_step, "train_metrics": result.metrics,
               "last_train_log": _last_log(trainer.state.log_history), "final_eval": final_eval,
               "lambda_final": trainer.lagrange.lam, "lambda_trajectory": trainer.lagrange.history,
               "nan_steps_skipped": trainer.lagrange.nan_steps_total,
               "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
               "metric_for_best_model": args.metric_for_best_model, "resumed_from": resume,
               "seconds": None, "world_size": args.world_size}
    if trainer.is_world_process_zero():
        summary["heldout_harmful_safety_preference"] = heldout_check(trainer.model, ctx, cfg)
        summary["seconds"] = round(time.time() - t0, 2)
        export_policy(trainer.accelerator.unwrap_model(trainer.model), tok, paths["output"],
                      merge_lora=args.merge_lora_on_export, cfg=cfg, summary=summary,
                      summary_md=format_summary(summary))
    trainer.accelerator.wait_for_everyone()
    return summary


def heldout_check(model, ctx: dict, cfg) -> dict:
    """Preference for the safer response on held-out harmful prompts (val + test records with
    is_harmful_prompt), policy vs reference; reference log-probs from the (cached) precompute pass."""
    from .measure import safety_preference
    from .precompute import precompute

    args, paths, tok = ctx["args"], ctx["paths"], ctx["tokenizer"]
    recs = [r for r in ctx["records"].get("val", []) if r.get("is_harmful_prompt")]
    test_file = paths["data"] / "test.jsonl"
    if test_file.is_file():
        recs += [r for r in load_records(test_file) if r.get("is_harmful_prompt")]
    if not recs:
        return {"n": 0}
    ref = precompute(recs, paths["policy"], tok, None, None, paths["cache"], max_length=args.max_length,
                     max_prompt_length=args.max_prompt_length, max_tokens_per_batch=args.precompute_tokens_per_batch,
                     model_cfg=cfg.section("model"), name="heldout-harmful")
    return safety_preference(model, tok, recs, ref, max_length=args.max_length,
                             max_prompt_length=args.max_prompt_length,
                             max_tokens_per_batch=args.precompute_tokens_per_batch)


def _last_log(history: list[dict]) -> dict:
    for entry in reversed(history):
        if "loss_total" in entry:
            return entry
    return {}


def format_summary(s: dict) -> str:
    lines = [f"# Safe-MM-DPO training ({s['algorithm']})", "",
             f"- steps: {s['global_step']}, time: {s['seconds']} s, NaN steps skipped: {s['nan_steps_skipped']}",
             f"- λ final: {s['lambda_final']:.6g} ({len(s['lambda_trajectory'])} updates)",
             f"- best checkpoint ({s['metric_for_best_model']}): {s['best_checkpoint']}", ""]
    pref = s.get("heldout_harmful_safety_preference")
    if pref and pref.get("n"):
        lines += ["## Held-out harmful prompts: preference for the safer response", "",
                  "| n | margin policy | margin reference | h_S mean | h_S > 0 |", "|---|---|---|---|---|",
                  f"| {pref['n']} | {pref['policy_margin_mean']:.4f} | {pref['reference_margin_mean']:.4f} "
                  f"| {pref['logratio_margin_mean']:.4f} | {pref['logratio_margin_positive']:.3f} |", ""]
    last = s.get("last_train_log") or {}
    if last:
        lines += ["## Last training log", "", "```", json.dumps(last, indent=1), "```", ""]
    return "\n".join(lines)


def cli_main(cfg, args) -> int:
    summary = run_train_dpo(cfg, data_dir=getattr(args, "data_dir", None), output_dir=getattr(args, "output", None),
                            resume=getattr(args, "resume", None))
    print(json.dumps({k: summary[k] for k in ("algorithm", "global_step", "lambda_final", "nan_steps_skipped",
                                               "seconds", "best_checkpoint")}, indent=1))
    return 0
