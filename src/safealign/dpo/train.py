"""`safealign train-dpo`: precompute pass, Safe-MM-DPO training, held-out check, export.

Every path comes from the run's `RunLayout` (see docs/DESIGN.md): data `layout.split(...)`, output
`layout.aligned()`, checkpoints `layout.checkpoints(stage)`, TensorBoard `layout.tensorboard(stage)`,
precompute cache `layout.cache("precompute")`, judges `layout.judge(dim)`, and the starting policy
`layout.policy_start` (the config decides it, never a leftover folder). `stage` is `dpo` for the main run
and `dpo_<algo>` for the pipeline's ablations, so their checkpoints and logs never mix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from ..data.records import read_preference_records
from ..errors import ConfigError
from ..layout import RunLayout
from ..logs import say
from ..modelcard import push_to_hub
from ..models.base import ensure_base_model
from ..models.loading import load_causal_lm, load_policy, load_tokenizer
from ..rm.scoring import load_scorer
from .config import SafeDPOConfig
from .constraints import RunConstraint
from .data import PairCollator, PairDataset, require_safety_labels, tokenize_records
from .export import export_policy
from .measure import safety_preference
from .precompute import precompute
from .trainer import SafeMMDPOTrainer

log = logging.getLogger(__name__)


def starting_policy(cfg, layout: RunLayout) -> str:
    """`layout.policy_start`, the tiny base built first when that is what the run starts from."""
    if layout.start == "tiny":
        return ensure_base_model(cfg, layout.data_dir)
    policy = layout.policy_start
    if layout.policy_start_is_local and not (Path(policy) / "config.json").is_file():
        raise ConfigError(f"{policy}: the starting policy (sft.enabled) is not trained yet; "
                             "run `safealign sft` first")
    return policy


def _needed_judges(d: SafeDPOConfig, layout: RunLayout) -> tuple[str | None, str | None]:
    """The judges to score with: δ_H (dynamic β) needs the helpful RM, the safe algorithms the cost model.
    A judge the algorithm does not need is still used when its folder exists, so the ablations share one
    precompute cache and log the same margins; a needed one that is missing is an error."""
    configured = dict(layout.judge_paths)
    judges = []
    for what, dim, needed in (("helpful reward model", "helpful", d.dynamic_beta),
                              ("cost model", "harmless", d.is_safe)):
        p = layout.judge(dim)
        local = dim not in configured or Path(p).is_absolute() or p.startswith(".")
        if Path(p).exists():
            judges.append(p)
        elif needed and local:
            raise ConfigError(f"{p}: {what} not found; train it first (`safealign train-rm --dimension "
                                 f"{dim}`) or set reward.{dim}_rm_path")
        else:  # a needed judge given as a Hub id is loaded from the Hub
            judges.append(p if needed else None)
    return judges[0], judges[1]


def _read_splits(layout: RunLayout) -> dict[str, list[dict]]:
    records = {"train": read_preference_records(layout.split("train"))}
    if layout.split("val").is_file():
        records["val"] = read_preference_records(layout.split("val"))
    return records


def build_trainer(cfg, data_dir=None, output_dir=None, stage: str = "dpo"):
    """Precompute (or load the online judges), load the policy, build the trainer.

    Returns (trainer, ctx) with ctx = {layout, output, policy, args, tokenizer, records: {train, val},
    cached: {train, val}, helpful_rm, harmless_rm}.
    """
    layout = RunLayout.from_config(cfg).with_data_dir(data_dir)
    d: SafeDPOConfig = cfg.section("dpo")
    output = Path(output_dir) if output_dir else layout.aligned(None if stage == "dpo" else d.algorithm)
    args, callbacks = d.fit_to_run(layout, stage, cfg)
    mcfg = cfg.section("model")
    records = _read_splits(layout)
    if args.algorithm == "safedpo":
        for name, recs in records.items():
            require_safety_labels(recs, layout.split(name))
    args.check_steps(len(records["train"]), args.world_size, key="dpo.num_train_epochs")
    constraint = RunConstraint(args, records["train"], records.get("val", []))
    policy_path = starting_policy(cfg, layout)
    helpful_path, harmless_path = _needed_judges(args, layout)
    tok = load_tokenizer(policy_path, revision=mcfg.revision, trust_remote_code=mcfg.trust_remote_code,
                         chat_template=mcfg.chat_template)
    max_prompt = args.effective_max_prompt_length()

    cached = {}
    if args.precompute:
        with args.main_process_first(desc="precompute"):  # rank 0 computes, the others read its cache
            for name, recs in records.items():
                cached[name] = precompute(recs, policy_path, tok, helpful_path, harmless_path,
                                          layout.cache("precompute"), max_length=args.max_length,
                                          max_prompt_length=max_prompt,
                                          max_tokens_per_batch=args.precompute_tokens_per_batch,
                                          model_cfg=mcfg, name=name)
    online = not args.precompute
    member_of = constraint.member_of if constraint.grouped is not None else None
    feats = {name: tokenize_records(recs, tok, args.max_length, max_prompt, cached.get(name), keep_text=online,
                                    member_of=member_of)
             for name, recs in records.items()}

    policy = load_policy(mcfg, policy_path)
    ref_model = helpful_scorer = cost_scorer = None
    if online:
        if not mcfg.use_lora:  # with LoRA the reference is the policy with its adapter disabled
            ref_model = load_causal_lm(policy_path, revision=mcfg.revision, dtype=mcfg.dtype,
                                       trust_remote_code=mcfg.trust_remote_code)
        helpful_scorer = load_scorer(helpful_path) if helpful_path else None
        cost_scorer = load_scorer(harmless_path) if harmless_path else None
    if args.jc_estimator == "on_policy" and args.is_safe and cost_scorer is None:
        cost_scorer = load_scorer(harmless_path)  # resident for the on-policy J_C estimate
    if "val" not in records:
        args = dataclasses.replace(args, eval_strategy="no", metric_for_best_model=None, load_best_model_at_end=False)

    trainer = SafeMMDPOTrainer(model=policy, args=args, train_dataset=PairDataset(feats["train"]),
                               eval_dataset=PairDataset(feats["val"]) if "val" in feats else None,
                               data_collator=PairCollator(tok.pad_token_id), processing_class=tok,
                               callbacks=callbacks, ref_model=ref_model, helpful_scorer=helpful_scorer,
                               cost_scorer=cost_scorer, prompts=sampling_prompts(records["train"]),
                               constraint=constraint, run_config=cfg.to_dict(["run", "model", "dpo"]))
    ctx = {"layout": layout, "output": output, "policy": policy_path, "args": args, "tokenizer": tok,
           "records": records, "cached": cached, "helpful_rm": helpful_path, "harmless_rm": harmless_path}
    return trainer, ctx


def sampling_prompts(records: list[dict]) -> list[dict]:
    """The distinct training prompts on-policy sampling draws from: {prompt, harmful, record} (harmful if any of
    its records is; `record`: its first record, whose groups the prompt's samples count in)."""
    out: dict[str, dict] = {}
    for r in records:
        entry = out.setdefault(r["prompt"], {"prompt": r["prompt"], "harmful": False, "record": r})
        entry["harmful"] = entry["harmful"] or bool(r.get("is_harmful_prompt"))
    return list(out.values())


def run_train_dpo(cfg, data_dir=None, output_dir=None, resume=None, stage: str = "dpo") -> dict:
    """Train the policy; returns the summary written to `<output>/train_summary.json`.
    `resume`: "latest" (the newest complete checkpoint of `stage`, if any) or a checkpoint folder."""
    t0 = time.time()
    trainer, ctx = build_trainer(cfg, data_dir, output_dir, stage)
    args, tok = ctx["args"], ctx["tokenizer"]
    result = trainer.train(resume_from_checkpoint=resume)
    final_eval = trainer.evaluate() if "val" in ctx["records"] else {}

    summary = {"algorithm": args.algorithm, "policy_init": ctx["policy"], "helpful_rm": ctx["helpful_rm"],
               "harmless_rm": ctx["harmless_rm"], "precompute": args.precompute, "jc_estimator": args.jc_estimator,
               "global_step": trainer.state.global_step, "train_metrics": result.metrics,
               "last_train_log": _last_log(trainer.state.log_history), "final_eval": final_eval,
               "lambda_final": trainer.constraint.lam, "lambda_trajectory": trainer.constraint.history,
               "constraint": constraint_summary(args, trainer),
               "nan_steps_skipped": trainer.lagrange.nan_steps_total,
               "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
               "metric_for_best_model": args.metric_for_best_model, "resumed_from": resume,
               "seconds": None, "world_size": args.world_size}
    if trainer.is_world_process_zero():
        summary["heldout_harmful_safety_preference"] = heldout_check(trainer.model, ctx, cfg)
        summary["seconds"] = round(time.time() - t0, 2)
        export_policy(trainer.accelerator.unwrap_model(trainer.model), tok, ctx["output"],
                      merge_lora=args.merge_lora_on_export, cfg=cfg, summary=summary,
                      summary_md=format_summary(summary), data_dir=ctx["layout"].data_dir)
    trainer.accelerator.wait_for_everyone()
    return summary


def constraint_summary(args, trainer) -> dict:
    """The constraint as run: kind, threshold(s), final λ per group, and the constrained selection's verdict
    (which logged evaluations met the threshold; `none_feasible` when none did)."""
    out = {"kind": args.constraint, "choice": args.constraint_choice, "threshold": args.cost_threshold,
           "constraints": args.constraints}
    if trainer.constraint.grouped is not None:
        g = trainer.constraint.grouped
        out.update(groups=g.keys, thresholds=g.thresholds, lambda_final=g.lam, jc_last=g.last_jc)
    evals = [e for e in trainer.state.log_history if "eval_jc" in e]
    feasible = [e["step"] for e in evals if e["eval_jc"] <= args.cost_threshold]
    if evals:
        out["selection"] = {"status": "feasible" if feasible else "none_feasible", "feasible_steps": feasible,
                            "eval_jc": [[e["step"], e["eval_jc"]] for e in evals]}
        if not feasible:
            log.warning("constrained selection: no validation J_C met the threshold %g (best %.4g); the "
                        "checkpoint that missed it least ranks first", args.cost_threshold,
                        min(e["eval_jc"] for e in evals))
    return out


def heldout_check(model, ctx: dict, cfg) -> dict:
    """Preference for the safer response on held-out harmful prompts (val + test records with
    is_harmful_prompt), policy vs reference; reference log-probs from the (cached) precompute pass."""
    args, layout, tok = ctx["args"], ctx["layout"], ctx["tokenizer"]
    recs = [r for r in ctx["records"].get("val", []) if r.get("is_harmful_prompt")]
    if layout.split("test").is_file():
        recs += [r for r in read_preference_records(layout.split("test")) if r.get("is_harmful_prompt")]
    if not recs:
        return {"n": 0}
    max_prompt = args.effective_max_prompt_length()
    ref = precompute(recs, ctx["policy"], tok, None, None, layout.cache("precompute"), max_length=args.max_length,
                     max_prompt_length=max_prompt, max_tokens_per_batch=args.precompute_tokens_per_batch,
                     model_cfg=cfg.section("model"), name="heldout-harmful")
    return safety_preference(model, tok, recs, ref, max_length=args.max_length, max_prompt_length=max_prompt,
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
    stage = getattr(args, "stage", None) or "dpo"
    output = getattr(args, "output", None)
    summary = run_train_dpo(cfg, data_dir=getattr(args, "data_dir", None), output_dir=output,
                            resume=getattr(args, "resume", None), stage=stage)
    say(json.dumps({k: summary[k] for k in ("algorithm", "global_step", "lambda_final", "nan_steps_skipped",
                                             "seconds", "best_checkpoint")}, indent=1))
    repo = getattr(args, "push_to_hub", None) or cfg.section("run").push_to_hub
    if repo and summary.get("seconds") is not None:  # rank 0 exported the folder
        layout = RunLayout.from_config(cfg)
        folder = Path(output) if output else layout.aligned(None if stage == "dpo" else summary["algorithm"])
        say(f"train-dpo: pushed {folder} to {push_to_hub(folder, repo)}")
    return 0
