"""`safealign train-rm --dimension helpful|harmless`: train, keep the best checkpoint, save the model folder.

Every path comes from the run's `RunLayout`: data `layout.split(...)`, Trainer checkpoints
`layout.checkpoints("<dimension>_rm")`, TensorBoard `layout.tensorboard("<dimension>_rm")`, the best model
`layout.rm(dimension)` (safetensors + tokenizer + config.yaml + metrics.json + metrics.md), written
atomically. Every path depends on the dimension, so the two models can train in two processes at once.
The model is the `model` section's base with `reward.model` applied (LoRA, dtype, ...).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from ..config import save_resolved
from ..errors import ConfigError, SafeAlignError
from ..fileio import atomic_path, write_json, write_text
from ..layout import RM_DIMENSIONS, RunLayout
from ..models.base import ensure_base_model
from ..models.loading import count_parameters, load_tokenizer, load_trainable_score_model
from .config import RewardConfig
from .data import RewardCollator, RewardDataset, pair_examples, single_examples
from .trainer import RewardTrainer

log = logging.getLogger(__name__)


def _load_model(cfg, rc: RewardConfig, layout: RunLayout):
    """(score model, tokenizer, base path): the `model` section with `reward.model` applied."""
    mc = rc.model_config(cfg.section("model"))
    base = ensure_base_model(cfg, layout.data_dir) if mc.is_tiny else mc.name_or_path
    tokenizer = load_tokenizer(base, revision=mc.revision, trust_remote_code=mc.trust_remote_code)
    model = load_trainable_score_model(mc, base, pad_token_id=tokenizer.pad_token_id)
    model.config.use_cache = False
    total, trainable = count_parameters(model)
    log.info("score model from %s: %.2fM parameters, %.2fM trainable", base, total / 1e6, trainable / 1e6)
    return model, tokenizer, base


def build_trainer(cfg, dimension: str, data_dir=None) -> tuple[RewardTrainer, dict]:
    """Read the data, load the model, build the trainer. Returns (trainer, ctx) with ctx = {layout, base,
    train, val} (the two datasets)."""
    if dimension not in RM_DIMENSIONS:
        raise ConfigError(f"dimension: must be helpful or harmless (got {dimension!r})")
    rc: RewardConfig = cfg.section("reward")
    layout = RunLayout.from_config(cfg).with_data_dir(data_dir)
    stage = f"{dimension}_rm"
    train_pairs = pair_examples(layout.split("train"), dimension)
    val_pairs = pair_examples(layout.split("val"), dimension)
    singles = []
    if dimension == "harmless" and rc.include_single_response and layout.split("safety_train").is_file():
        singles = single_examples(layout.split("safety_train"))
    if not train_pairs or not val_pairs:
        raise SafeAlignError(f"{layout.data_dir}: train.jsonl and val.jsonl must each hold at least one pair")
    changes = {}
    if dimension == "harmless" and "metric_for_best_model" not in (cfg.raw.get("reward") or {}):
        # c > 0 ⇔ unsafe is what the judge and the safety constraint read; pairwise accuracy saturates early.
        changes["metric_for_best_model"] = "sign_accuracy"
    args, callbacks = rc.fit_to_run(layout, stage, cfg, **changes)
    args.check_steps(len(train_pairs) + len(singles), args.world_size, key="reward.num_train_epochs")

    model, tokenizer, base = _load_model(cfg, rc, layout)
    train_ds = RewardDataset(tokenizer, train_pairs, singles, args.max_length, desc="train")
    val_ds = RewardDataset(tokenizer, val_pairs, None, args.max_length, desc="val")
    log.info("%s RM: %d train pairs (+%d single responses), %d val pairs", dimension, train_ds.num_pairs,
             train_ds.num_singles, val_ds.num_pairs)
    trainer = RewardTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                            data_collator=RewardCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                            callbacks=callbacks, dimension=dimension, sign_loss_weight=rc.sign_loss_weight,
                            center_coeff=rc.center_coeff)
    return trainer, {"layout": layout, "base": base, "train": train_ds, "val": val_ds}


def run_train_rm(cfg, dimension: str, data_dir=None, output_dir=None, resume=None) -> dict:
    """Train the helpful RM or the cost model; returns the metrics dict written to metrics.json.
    `resume`: "latest" (the newest complete checkpoint, if any) or a checkpoint folder."""
    trainer, ctx = build_trainer(cfg, dimension, data_dir)
    output_dir = Path(output_dir) if output_dir else ctx["layout"].rm(dimension)
    train_ds, val_ds = ctx["train"], ctx["val"]
    start = time.time()
    train_out = trainer.train(resume_from_checkpoint=resume)
    final = _last_eval(trainer)  # before evaluate() below adds the saved model's own entry
    saved = trainer.evaluate()  # the model that is saved: the best checkpoint (load_best_model_at_end)
    metrics = {
        "dimension": dimension,
        "score": "reward r (higher = more helpful)" if dimension == "helpful" else "cost c (c > 0 = unsafe)",
        "base_model": ctx["base"],
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
        _save(trainer, trainer.processing_class, cfg, output_dir, metrics)
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
