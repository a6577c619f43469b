"""`run_sft`: fine-tune a causal LM on (prompt, response) examples with the response-only LM loss.

One training routine for both users: the warm-up of the base policy (`sft.warmup`) and the distillation
student (`distill.student`). The caller fits the arguments to its run (`StageArguments.fit_to_run`: the
checkpoint folder, reporters, TensorBoard callback); training runs in `training.CheckpointedTrainer`, so a
checkpoint is atomic and resuming goes through `training.resolve_resume` like every other stage.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import save_resolved
from ..errors import SafeAlignError
from ..fileio import atomic_path, write_json
from ..models.config import ModelConfig
from ..models.loading import count_parameters, load_policy, load_tokenizer
from ..training import CheckpointedTrainer, StageArguments, resolve_resume
from .data import EncodedDataset, ResponseOnlyCollator

log = logging.getLogger(__name__)


def load_trainable(base_path: str, model_cfg=None):
    """(model, tokenizer) to fine-tune from `base_path`, loaded as `model_cfg` (a ModelConfig) says.

    Full fine-tuning keeps fp32 master weights (bf16 is autocast by the Trainer); LoRA loads the base in the
    configured dtype, as the other stages do. No `model_cfg`: full fine-tuning, no remote code.
    """
    model_cfg = model_cfg or ModelConfig()
    if not model_cfg.use_lora:
        model_cfg = dataclasses.replace(model_cfg, dtype="float32", load_in_4bit=False)
    tokenizer = load_tokenizer(base_path, trust_remote_code=model_cfg.trust_remote_code)
    return load_policy(model_cfg, base_path), tokenizer


def run_sft(train_examples: Sequence[dict], val_examples: Sequence[dict] | None, base_path: str,
            output_dir: str | Path, args: StageArguments, *, model_cfg=None, resume: str | bool | None = None,
            callbacks: Sequence = (), config_to_save: Any = None, steps_key: str = "num_train_epochs") -> dict:
    """Fine-tune `base_path` on (prompt, response) examples with the response-only LM loss.

    `args` are fitted to the run: checkpoints go to `args.output_dir`, `resume="latest"` (or a checkpoint
    path) continues from one; tokens are cut at `args.max_length` / `args.max_prompt_length`. Writes
    `output_dir` atomically: the plain model (safetensors, LoRA merged), tokenizer, config.yaml and
    metrics.json. Returns the metrics: train loss, val loss/perplexity before and after, examples, seconds.
    `steps_key` names the setting to change when the schedule would take no optimizer step.
    """
    if not train_examples:
        raise SafeAlignError("sft: no training examples")
    args.check_steps(len(train_examples), args.world_size, key=steps_key)  # before anything loads
    if not val_examples:
        args = dataclasses.replace(args, eval_strategy="no")
    model, tokenizer = load_trainable(base_path, model_cfg)
    use_lora = bool(getattr(model_cfg, "use_lora", False))
    if getattr(args, "activation_checkpointing", None) or getattr(args, "gradient_checkpointing", False):
        model.config.use_cache = False

    max_length, max_prompt_length = args.max_length, args.max_prompt_length
    train_ds = EncodedDataset(train_examples, tokenizer, max_length, max_prompt_length, source="train examples")
    val_ds = EncodedDataset(val_examples, tokenizer, max_length, max_prompt_length,
                            source="val examples") if val_examples else None
    trainer = CheckpointedTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id), callbacks=list(callbacks),
        processing_class=tokenizer,
    )
    metrics: dict[str, Any] = {"train_examples": len(train_ds), "val_examples": len(val_ds) if val_ds else 0,
                               "base": str(base_path), "train_response_tokens": train_ds.response_tokens}
    resume_from = resolve_resume(resume, args.output_dir)
    if val_ds is not None and resume_from is None:
        before = trainer.evaluate(metric_key_prefix="initial_val")
        metrics["initial_val_loss"] = before["initial_val_loss"]
        metrics["initial_val_perplexity"] = _ppl(before["initial_val_loss"])
    start = time.time()
    out = trainer.train(resume_from_checkpoint=resume_from)
    metrics["train_seconds"] = round(time.time() - start, 2)
    metrics["train_loss"] = out.training_loss  # mean over the run's logged steps
    metrics["global_step"] = out.global_step
    last_train = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if last_train:
        metrics["final_train_loss"] = last_train[-1]
    metrics["train_perplexity"] = _ppl(metrics.get("final_train_loss", out.training_loss))
    if val_ds is not None:
        after = trainer.evaluate(metric_key_prefix="val")
        metrics["val_loss"] = after["val_loss"]
        metrics["val_perplexity"] = _ppl(after["val_loss"])
    metrics["log_history"] = trainer.state.log_history

    model = trainer.model
    if use_lora:
        model = model.merge_and_unload()
    metrics["parameters"], _ = count_parameters(model)
    with atomic_path(output_dir) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        save_resolved(config_to_save if config_to_save is not None else args, tmp / "config.yaml")
        write_json(tmp / "metrics.json", metrics)
    del trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.info("sft: %d examples, val loss %s -> %s; saved %s", len(train_ds), metrics.get("initial_val_loss"),
             metrics.get("val_loss"), output_dir)
    return metrics


def _ppl(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 50.0))
