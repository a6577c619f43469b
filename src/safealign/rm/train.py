"""`safealign train-rm --dimension helpful|harmless`: train, keep the best checkpoint, save the model folder.

Layout under the run directory (defaults): data from `data/`, Trainer checkpoints in
`checkpoints/<dimension>_rm/`, TensorBoard events in `logs/<dimension>_rm/`, the best model in
`models/<dimension>_rm/` (safetensors + tokenizer + config.yaml + metrics.json + metrics.md), written
atomically. Every path depends on the dimension, so the two models can train in two processes at once.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from ..config import build_dataclass, save_resolved
from ..errors import ConfigError, SafeAlignError
from ..fileio import atomic_path, write_json, write_text
from ..models.base import ensure_base_model
from .config import RewardConfig
from .data import DIMENSIONS, RewardCollator, RewardDataset, pair_examples, single_examples

log = logging.getLogger(__name__)


def _training_args(cfg, dimension: str, checkpoint_dir: Path) -> tuple[RewardConfig, list[str]]:
    """The section's settings with run-dependent ones filled in; returns (args, reporters)."""
    raw = dict(cfg.raw.get("reward") or {})
    run = cfg.section("run")
    reporters = list(raw.get("report_to") or run.report_to)
    if isinstance(raw.get("report_to"), str):
        reporters = [raw["report_to"]]
    raw["output_dir"] = str(checkpoint_dir)
    raw.setdefault("seed", run.seed)
    # TensorBoard goes through our own callback (its folder is per-dimension); others through the Trainer.
    raw["report_to"] = [r for r in reporters if r not in ("tensorboard", "none")] or "none"
    raw.setdefault("run_name", f"{run.name}-{dimension}_rm")
    if dimension == "harmless" and "metric_for_best_model" not in raw:
        # c > 0 ⇔ unsafe is what the judge and the safety constraint read; pairwise accuracy saturates early.
        raw["metric_for_best_model"] = "sign_accuracy"
    return build_dataclass(RewardConfig, raw, "reward"), reporters


def _resume_arg(resume: str | None, checkpoint_dir: Path):
    if not resume:
        return None
    if resume == "latest":
        found = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        if not found:
            log.warning("--resume: no checkpoint in %s; starting from scratch", checkpoint_dir)
            return None
        return str(found[-1])
    if not Path(resume).is_dir():
        raise SafeAlignError(f"--resume {resume}: no such checkpoint folder")
    return resume


def _load_model(cfg, rc: RewardConfig, data_dir: Path):
    from ..models.loading import apply_lora, count_parameters, load_score_model, load_tokenizer

    mc = cfg.section("model")
    base = rc.model_name_or_path or ensure_base_model(cfg, data_dir)
    revision = None if rc.model_name_or_path else mc.revision
    tokenizer = load_tokenizer(base, revision=revision, trust_remote_code=mc.trust_remote_code)
    # Full fine-tuning keeps float32 master weights (bf16 runs as autocast, `bf16: true` on CUDA): AdamW
    # updates in bf16 weights lose most small steps. LoRA trains float32 adapters over a frozen bf16 base.
    dtype = "float32" if mc.dtype == "auto" and not (rc.use_lora or mc.load_in_4bit) else mc.dtype
    model = load_score_model(base, revision=revision, dtype=dtype, trust_remote_code=mc.trust_remote_code,
                             load_in_4bit=mc.load_in_4bit, attn_implementation=mc.attn_implementation,
                             pad_token_id=tokenizer.pad_token_id)
    model.config.use_cache = False
    if rc.use_lora:
        model = apply_lora(model, rc.lora_r, rc.lora_alpha, rc.lora_dropout, rc.lora_target_modules,
                           task_type="SEQ_CLS")
    total, trainable = count_parameters(model)
    log.info("score model from %s: %.2fM parameters, %.2fM trainable", base, total / 1e6, trainable / 1e6)
    return model, tokenizer, base


def run_train_rm(cfg, dimension: str, data_dir=None, output_dir=None, resume=None) -> dict:
    """Train the helpful RM or the cost model; returns the metrics dict written to metrics.json."""
    from transformers.integrations import TensorBoardCallback

    if dimension not in DIMENSIONS:
        raise ConfigError(f"dimension: must be helpful or harmless (got {dimension!r})")
    rc: RewardConfig = cfg.section("reward")  # validates the section
    run_dir = cfg.section("run").directory
    data_dir = Path(data_dir or run_dir / "data")
    output_dir = Path(output_dir or run_dir / "models" / f"{dimension}_rm")
    checkpoint_dir = run_dir / "checkpoints" / f"{dimension}_rm"
    logs_dir = run_dir / "logs" / f"{dimension}_rm"
    for name in ("train.jsonl", "val.jsonl"):
        if not (data_dir / name).is_file():
            raise SafeAlignError(f"{data_dir / name}: not found; run `safealign prepare` first")
    args, reporters = _training_args(cfg, dimension, checkpoint_dir)

    model, tokenizer, base = _load_model(cfg, rc, data_dir)
    train_pairs = pair_examples(data_dir / "train.jsonl", dimension)
    val_pairs = pair_examples(data_dir / "val.jsonl", dimension)
    singles = []
    if dimension == "harmless" and rc.include_single_response and (data_dir / "safety_train.jsonl").is_file():
        singles = single_examples(data_dir / "safety_train.jsonl")
    if not train_pairs or not val_pairs:
        raise SafeAlignError(f"{data_dir}: train.jsonl and val.jsonl must each hold at least one pair")
    train_ds = RewardDataset(tokenizer, train_pairs, singles, rc.max_length, desc="train")
    val_ds = RewardDataset(tokenizer, val_pairs, None, rc.max_length, desc="val")
    log.info("%s RM: %d train pairs (+%d single responses), %d val pairs", dimension, train_ds.num_pairs,
             train_ds.num_singles, val_ds.num_pairs)

    callbacks = []
    if "tensorboard" in reporters:
        tb = TensorBoardCallback()
        tb.logging_dir = str(logs_dir)
        callbacks.append(tb)
    from .trainer import RewardTrainer

    trainer = RewardTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                            data_collator=RewardCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                            callbacks=callbacks, dimension=dimension, sign_loss_weight=rc.sign_loss_weight,
                            center_coeff=rc.center_coeff)
    start = time.time()
    train_out = trainer.train(resume_from_checkpoint=_resume_arg(resume, checkpoint_dir))
    final = _last_eval(trainer)  # before evaluate() below adds the saved model's own entry
    saved = trainer.evaluate()  # the model that is saved: the best checkpoint (load_best_model_at_end)
    metrics = {
        "dimension": dimension,
        "score": "reward r (higher = more helpful)" if dimension == "helpful" else "cost c (c > 0 = unsafe)",
        "base_model": base,
        "num_train_pairs": train_ds.num_pairs,
        "num_train_single_responses": train_ds.num_singles,
        "num_val_pairs": val_ds.num_pairs,
        "model": _strip(saved),
        "final": final,
        "best": _best(trainer),
        "train": {"loss": train_out.training_loss, "steps": trainer.state.global_step,
                  "epochs": trainer.state.epoch, "wall_time_s": round(time.time() - start, 1)},
    }
    if trainer.is_world_process_zero():
        _save(trainer, tokenizer, cfg, output_dir, metrics)
    log.info("%s RM saved to %s: %s", dimension, output_dir, _summary(metrics))
    return metrics


def _strip(m: dict) -> dict:
    return {k.removeprefix("eval_"): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}


def _last_eval(trainer) -> dict:
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    return _strip({k: v for k, v in evals[-1].items() if k.startswith("eval_") or k in ("step", "epoch")}) if evals else {}


def _best(trainer) -> dict:
    name = trainer.args.metric_for_best_model or "loss"
    key = name if name.startswith("eval_") else f"eval_{name}"
    evals = [e for e in trainer.state.log_history if key in e]
    if not evals:
        return {}
    pick = (max if trainer.args.greater_is_better else min)(evals, key=lambda e: e[key])
    out = _strip({k: v for k, v in pick.items() if k.startswith("eval_") or k in ("step", "epoch")})
    out["metric"] = name.removeprefix("eval_")
    out["checkpoint"] = trainer.state.best_model_checkpoint
    return out


def _summary(m: dict) -> str:
    f = m["model"]
    keys = ["accuracy", "sign_accuracy", "auroc"] if m["dimension"] == "harmless" else ["accuracy"]
    return ", ".join(f"val {k} {f[k]:.4f}" for k in keys if f.get(k) is not None)


def _save(trainer, tokenizer, cfg, output_dir: Path, metrics: dict) -> None:
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # LoRA: save a plain model that load_scorer reads directly
        model = model.merge_and_unload()
    with atomic_path(output_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        save_resolved(cfg, tmp / "config.yaml")
        write_json(tmp / "metrics.json", metrics)
        write_text(tmp / "metrics.md", metrics_markdown(metrics))


def metrics_markdown(m: dict) -> str:
    f, last, b, t = m["model"], m.get("final") or {}, m.get("best") or {}, m["train"]
    rows = [k for k in ("accuracy", "sign_accuracy", "auroc", "margin", "loss") if k in f]

    def fmt(v):
        return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = [f"# {m['dimension']} reward model", "",
             f"Score: {m['score']}. Base: `{m['base_model']}`. Train pairs: {m['num_train_pairs']}"
             f" (+{m['num_train_single_responses']} single responses); validation pairs: {m['num_val_pairs']}.", "",
             "| validation | saved model | best checkpoint | last checkpoint |", "|---|---|---|---|"]
    lines += [f"| {k} | {fmt(f.get(k))} | {fmt(b.get(k))} | {fmt(last.get(k))} |" for k in rows]
    lines += ["", f"Training: {t['steps']} steps, {fmt(t['epochs'])} epochs, mean loss {fmt(t['loss'])}, "
                  f"{t['wall_time_s']} s. Best checkpoint by `{b.get('metric', '?')}` at step {b.get('step', '?')}.", ""]
    return "\n".join(lines)


def cli_main(cfg, args) -> int:
    metrics = run_train_rm(cfg, args.dimension, data_dir=args.data_dir, output_dir=args.output, resume=args.resume)
    print(f"{args.dimension} RM: {_summary(metrics)}")
    return 0
