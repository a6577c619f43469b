"""Supervised fine-tuning with the language-modelling loss on the response tokens only.

Used twice: the optional warm-up of the base policy on the more helpful answers (`run_sft_warmup`, section
`sft`) and the distillation student (`safealign.distill`). Every example is tokenized by
`safealign.chat.encode_pair`, the same chat format the reward models and DPO read, so a model trained here
answers in exactly the format the later stages score. A plain `transformers.Trainer` with our own collator is
used rather than TRL's `SFTTrainer`: SFTTrainer tokenizes prompt/completion data itself (its own template
handling and truncation), which would not be byte-identical to `encode_pair`.

Labels are -100 on the prompt positions and on padding, so the loss is the mean next-token cross-entropy
over the response tokens (eos included).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import transformers

from .errors import ConfigError, DataError, SafeAlignError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclasses.dataclass
class SFTStageConfig(transformers.TrainingArguments):
    """Section `sft`: the optional SFT warm-up of the base policy on the chosen (more helpful) answers."""

    enabled: bool = False  # the pipeline runs the warm-up only when true
    max_length: int = 512
    max_prompt_length: int | None = None  # default max_length // 2 (encode_pair)
    max_train_examples: int | None = None  # cap on the warm-up set (None: all of train.jsonl)
    # Seed defaults for a warm-up: a light touch, one pass over the data.
    learning_rate: float = 2e-5
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 16
    logging_steps: float = 10
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    save_total_limit: int | None = 2
    bf16: bool | None = None  # None: on where CUDA supports it; true is dropped (with a warning) elsewhere
    output_dir: str | None = None  # checkpoints; default <run dir>/checkpoints/sft

    def __post_init__(self):
        if self.max_length < 8:
            raise ConfigError(f"max_length: must be >= 8 (got {self.max_length})")
        if self.max_prompt_length is not None and not 0 < self.max_prompt_length < self.max_length:
            raise ConfigError(f"max_prompt_length: must be in (0, max_length) (got {self.max_prompt_length})")
        if self.max_train_examples is not None and self.max_train_examples <= 0:
            raise ConfigError(f"max_train_examples: must be > 0 (got {self.max_train_examples})")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0 (got {self.learning_rate})")
        resolve_bf16(self)
        super().__post_init__()


def resolve_bf16(args) -> None:
    """bf16 only where CUDA supports it, so one YAML (the real recipe's `bf16: true`) loads on a CPU machine
    too; None means "where supported". Called before TrainingArguments' own checks, which reject bf16 on CPU."""
    import torch

    ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not getattr(args, "use_cpu", False)
    if args.bf16 is None:
        args.bf16 = ok
    elif args.bf16 and not ok:
        log.warning("bf16: no CUDA device with bf16 support here; training in float32")
        args.bf16 = False


# --------------------------------------------------------------------------- data
class EncodedDataset:
    """(prompt, response) examples tokenized once with `encode_pair`; items are {input_ids, prompt_len}."""

    def __init__(self, examples: Sequence[dict], tokenizer, max_length: int = 512,
                 max_prompt_length: int | None = None, source: str = "examples"):
        from .chat import encode_pair

        self.items = []
        for i, ex in enumerate(examples):
            for field in ("prompt", "response"):
                value = ex.get(field) if isinstance(ex, dict) else None
                if not isinstance(value, str) or (field == "prompt" and not value.strip()):
                    raise DataError(source, i + 1, field, "missing or not a non-empty string")
            self.items.append(encode_pair(tokenizer, ex["prompt"], ex["response"], max_length=max_length,
                                          max_prompt_length=max_prompt_length))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class ResponseOnlyCollator:
    """Right-pads a batch; labels = input_ids on the response positions, -100 on prompt and padding."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict:
        import torch

        width = max(len(it["input_ids"]) for it in items)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for row, it in enumerate(items):
            seq = torch.tensor(it["input_ids"], dtype=torch.long)
            n, p = len(seq), it["prompt_len"]
            ids[row, :n] = seq
            mask[row, :n] = 1
            labels[row, p:n] = seq[p:]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def response_loss(logits, labels):
    """Mean next-token cross-entropy over positions whose label is not -100 (what the model's loss computes)."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


# --------------------------------------------------------------------------- training arguments
def prepare_args(args: transformers.TrainingArguments, checkpoint_dir: str | Path,
                 report_to: Sequence[str] | str | None = None) -> transformers.TrainingArguments:
    """A copy of `args` fit for this machine: bf16/fp16 only where CUDA supports them, CPU otherwise,
    checkpoints under `checkpoint_dir`, our own columns kept, the run's reporters."""
    import torch

    changes: dict[str, Any] = {"output_dir": str(checkpoint_dir), "remove_unused_columns": False}
    cuda = torch.cuda.is_available() and not getattr(args, "use_cpu", False)
    if getattr(args, "bf16", False) and not (cuda and torch.cuda.is_bf16_supported()):
        changes["bf16"] = False
    if getattr(args, "fp16", False) and not cuda:
        changes["fp16"] = False
    if not cuda:
        changes["use_cpu"] = True
    if report_to is not None:
        reporters = [report_to] if isinstance(report_to, str) else list(report_to)
        changes["report_to"] = [r for r in reporters if r != "none"] or "none"
    # Our dataset yields plain lists; no column pruning, no pinning warnings on CPU.
    changes["dataloader_pin_memory"] = bool(cuda)
    try:
        return dataclasses.replace(args, **changes)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"training arguments: {str(err).splitlines()[0]}") from None


def _callbacks(args, logging_dir: str | Path | None) -> tuple[transformers.TrainingArguments, list]:
    """TensorBoard writes into `logging_dir` (transformers 5 has no `logging_dir` argument any more)."""
    reporters = args.report_to if isinstance(args.report_to, list) else [args.report_to]
    if "tensorboard" not in reporters or logging_dir is None:
        return args, []
    from transformers.integrations import TensorBoardCallback

    rest = [r for r in reporters if r != "tensorboard"] or "none"
    args = dataclasses.replace(args, report_to=rest)
    Path(logging_dir).mkdir(parents=True, exist_ok=True)
    callback = TensorBoardCallback()
    # Set after construction: the callback (re)opens its writer here, also for the evaluation after training.
    callback.logging_dir = str(logging_dir)
    return args, [callback]


def _resume_arg(resume: str | bool | None, checkpoint_dir: Path):
    """`latest`/True: the newest checkpoint-N in checkpoint_dir (None when there is none); a path: that one."""
    if resume in (None, False, ""):
        return None
    if resume in (True, "latest"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
        if last is None:
            log.info("no checkpoint in %s; starting from scratch", checkpoint_dir)
        return last
    if not Path(resume).is_dir():
        raise SafeAlignError(f"{resume}: checkpoint folder not found")
    return str(resume)


# --------------------------------------------------------------------------- the stage
def run_sft(train_examples: Sequence[dict], val_examples: Sequence[dict] | None, base_path: str,
            output_dir: str | Path, args: transformers.TrainingArguments, model_cfg=None,
            resume: str | bool | None = None, logging_dir: str | Path | None = None,
            max_length: int | None = None, max_prompt_length: int | None = None,
            report_to: Sequence[str] | str | None = None, config_to_save: Any = None) -> dict:
    """Fine-tune `base_path` on (prompt, response) examples with the response-only LM loss.

    Writes `output_dir` atomically: the plain model (safetensors, LoRA merged), tokenizer, config.yaml and
    metrics.json. Checkpoints go to `args.output_dir`; `resume="latest"` (or a checkpoint path) continues
    from one. Returns the metrics: train loss, val loss/perplexity before and after, examples, seconds.
    """
    import time

    import torch

    from .config import save_resolved
    from .fileio import atomic_path, write_json
    from .models.loading import count_parameters, load_causal_lm, load_tokenizer

    if not train_examples:
        raise SafeAlignError("sft: no training examples")
    max_length = max_length or getattr(args, "max_length", 512)
    max_prompt_length = max_prompt_length or getattr(args, "max_prompt_length", None)
    checkpoint_dir = Path(args.output_dir if args.output_dir not in (None, "trainer_output")
                          else Path(output_dir).parent / f".{Path(output_dir).name}-checkpoints")
    args = prepare_args(args, checkpoint_dir, report_to)
    if not val_examples:
        args = dataclasses.replace(args, eval_strategy="no")
    args, callbacks = _callbacks(args, logging_dir)

    trust = bool(getattr(model_cfg, "trust_remote_code", False))
    tokenizer = load_tokenizer(base_path, trust_remote_code=trust)
    use_lora = bool(getattr(model_cfg, "use_lora", False))
    # Full fine-tuning keeps fp32 master weights (bf16 is autocast by the Trainer); LoRA loads the base in
    # the configured dtype, as the other stages do.
    model = load_causal_lm(base_path, dtype=model_cfg.dtype if use_lora else "float32", trust_remote_code=trust,
                           load_in_4bit=use_lora and getattr(model_cfg, "load_in_4bit", False))
    if use_lora:
        from .models.loading import apply_lora

        model = apply_lora(model, model_cfg.lora_r, model_cfg.lora_alpha, model_cfg.lora_dropout,
                           model_cfg.lora_target_modules)
    if getattr(args, "activation_checkpointing", None) or getattr(args, "gradient_checkpointing", False):
        model.config.use_cache = False

    train_ds = EncodedDataset(train_examples, tokenizer, max_length, max_prompt_length, source="train examples")
    val_ds = EncodedDataset(val_examples, tokenizer, max_length, max_prompt_length,
                            source="val examples") if val_examples else None
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id), callbacks=callbacks,
        processing_class=tokenizer,
    )
    metrics: dict[str, Any] = {"train_examples": len(train_ds), "val_examples": len(val_ds) if val_ds else 0,
                               "base": str(base_path),
                               "train_response_tokens": sum(len(x["input_ids"]) - x["prompt_len"]
                                                            for x in train_ds.items)}
    resume_from = _resume_arg(resume, checkpoint_dir)
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
    total, _ = count_parameters(model)
    metrics["parameters"] = total
    with atomic_path(output_dir) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if config_to_save is not None:
            save_resolved(config_to_save, tmp / "config.yaml")
        else:
            save_resolved(args, tmp / "config.yaml")
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


# --------------------------------------------------------------------------- the warm-up stage
def chosen_examples(rows: list[dict], source: str) -> list[dict]:
    """(prompt, more helpful response) of each preference record."""
    out = []
    for i, row in enumerate(rows):
        better = row.get("better_response_id")
        if better not in (0, 1):
            raise DataError(source, i + 1, "better_response_id", f"must be 0 or 1 (got {better!r})")
        response = row.get(f"response_{better}")
        if not isinstance(response, str):
            raise DataError(source, i + 1, f"response_{better}", "missing or not a string")
        out.append({"prompt": row.get("prompt"), "response": response})
    return out


def run_sft_warmup(cfg, data_dir: str | Path | None = None, output_dir: str | Path | None = None,
                   resume: str | bool | None = None) -> dict:
    """Warm the base policy up on the chosen (= more helpful) answers of `<run dir>/data/train.jsonl`.

    In the toy world the more helpful answer to a harmful prompt is usually the unsafe one, so the warmed-up
    base is *less* safe: alignment has to fix that, which is the point of the demo.
    """
    from .fileio import read_jsonl
    from .models.base import ensure_base_model

    run = cfg.section("run")
    sft = cfg.section("sft")
    run_dir = run.directory
    data_dir = Path(data_dir or run_dir / "data")
    output_dir = Path(output_dir or run_dir / "models" / "sft")
    files = {split: data_dir / f"{split}.jsonl" for split in ("train", "val")}
    if not files["train"].is_file():
        raise SafeAlignError(f"{files['train']}: not found; run `safealign prepare` first")
    train = chosen_examples(read_jsonl(files["train"]), str(files["train"]))
    val = chosen_examples(read_jsonl(files["val"]), str(files["val"])) if files["val"].is_file() else []
    if sft.max_train_examples:
        train = train[: sft.max_train_examples]
    base = ensure_base_model(cfg, data_dir)
    args = sft
    if sft.output_dir in (None, "trainer_output"):
        args = dataclasses.replace(sft, output_dir=str(run_dir / "checkpoints" / "sft"))
    transformers.set_seed(sft.seed)
    return run_sft(train, val[:512], base, output_dir, args, model_cfg=cfg.section("model"), resume=resume,
                   logging_dir=run_dir / "logs" / "sft", report_to=run.report_to, config_to_save=cfg)


def cli_main(cfg, args) -> int:
    """`safealign sft` (when cli.py wires it): the warm-up on its own."""
    metrics = run_sft_warmup(cfg, data_dir=getattr(args, "data_dir", None), output_dir=getattr(args, "output", None),
                             resume=getattr(args, "resume", None))
    print(f"sft: val loss {metrics.get('initial_val_loss')} -> {metrics.get('val_loss')}")
    return 0


__all__ = ["SFTStageConfig", "EncodedDataset", "ResponseOnlyCollator", "response_loss", "prepare_args",
           "run_sft", "run_sft_warmup", "chosen_examples", "cli_main"]
