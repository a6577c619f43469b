"""What every training stage shares: the arguments base class and the one checkpoint owner.

`StageArguments(TrainingArguments)` is the base of every training section (`sft`, `reward`, `dpo`,
`distill`), in the spirit of TRL's `trainer/base_config.py`: one bf16 policy, one way to fit the arguments to
a run (checkpoint folder, reporters, TensorBoard folder, seed), one resume resolver, one zero-step check.

`AtomicCheckpointMixin` is the one component that writes and finds checkpoints (like OpenRLHF's strategy
`save_ckpt/load_ckpt` with client state): a checkpoint is written under `<output>/.staging/`, completed with
the stage's extra state (`extra_checkpoint_state`, e.g. λ for DPO) and renamed into place, so a kill mid-save
never leaves a `checkpoint-N` that looks complete. Every stage's Trainer mixes it in.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import transformers
from transformers.trainer_utils import rotate_checkpoints

from .errors import ConfigError
from .models.lora_cast import skip_lora_input_cast_under_autocast

log = logging.getLogger(__name__)

STAGING = ".staging"
TRAINER_STATE = "trainer_state.json"


def cuda_bf16_available(use_cpu: bool = False) -> bool:
    import torch

    return bool(not use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@dataclasses.dataclass
class StageArguments(transformers.TrainingArguments):
    """Base of every training section. Defaults here are the ones all stages share; a stage overrides fields.

    bf16: None = on where a CUDA device supports it; `true` on a machine without one is dropped with a
    warning, so the real recipe's YAML (`bf16: true`) also loads on a CPU machine.
    report_to: None = the `run` section's reporters (`run.report_to`).
    max_length / max_prompt_length: token budget of prompt + response and of the prompt alone (None: half).
    """

    max_length: int = 512
    max_prompt_length: int | None = None
    output_dir: str | None = None  # set by fit_to_run: <run>/checkpoints/<stage>
    logging_steps: float = 10
    max_grad_norm: float = 1.0
    save_total_limit: int | None = 2
    bf16: bool | None = None
    report_to: None | str | list[str] = None
    remove_unused_columns: bool = False  # our collators need every field
    disable_tqdm: bool | None = False

    def __post_init__(self):
        if self.max_length < 8:
            raise ConfigError(f"max_length: must be >= 8 (got {self.max_length})")
        if self.max_prompt_length is not None and not 0 < self.max_prompt_length < self.max_length:
            raise ConfigError(f"max_prompt_length: must be in (0, max_length={self.max_length}) "
                              f"(got {self.max_prompt_length})")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0 (got {self.learning_rate})")
        for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1 (got {getattr(self, key)})")
        if self.max_steps is not None and self.max_steps == 0:
            raise ConfigError("max_steps: 0 would train nothing; use a positive number or -1 (epochs decide)")
        if not self.num_train_epochs > 0:  # also with max_steps set: a negative epoch count is never meant
            epochs_decide = self.max_steps is None or self.max_steps < 0
            raise ConfigError(f"num_train_epochs: must be > 0 (got {self.num_train_epochs})"
                              + ("; a stage that takes no optimizer step would leave its model untrained"
                                 if epochs_decide else ""))
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            raise ConfigError(f"max_grad_norm: must be >= 0 (got {self.max_grad_norm})")
        self._resolve_bf16()
        import torch

        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator (warns on every eval otherwise)
        self.remove_unused_columns = False
        if self.report_to is None:
            self.report_to = "none"  # fit_to_run fills in the run's reporters
        if self.output_dir is None:
            self.output_dir = "trainer_output"  # placeholder until fit_to_run points it into the run dir
        try:
            super().__post_init__()
        except ValueError as err:  # TrainingArguments' own checks, as one line naming the problem
            raise ConfigError(str(err).splitlines()[0].lstrip("- ")) from None

    def _resolve_bf16(self) -> None:
        ok = cuda_bf16_available(getattr(self, "use_cpu", False))
        if self.bf16 is None:
            self.bf16 = ok
        elif self.bf16 and not ok:
            log.warning("bf16: no CUDA device with bf16 support here; training in float32")
            self.bf16 = False
        if self.fp16 and not ok and not _cuda():
            self.fp16 = False

    @classmethod
    def normalize_config_keys(cls, values: dict, prefix: str) -> dict:
        """The config's keys as this transformers version names them (see `checkpointing_keys`)."""
        return checkpointing_keys(values, {f.name for f in dataclasses.fields(cls)}, prefix)

    def effective_max_prompt_length(self) -> int:
        return self.max_prompt_length or self.max_length // 2

    # ------------------------------------------------------------------ fitting to a run
    def fit_to_run(self, layout, stage: str, cfg, **changes: Any) -> tuple["StageArguments", list]:
        """A copy of these arguments for `stage` of the run `layout`: checkpoints in
        `layout.checkpoints(stage)`, TensorBoard in `layout.tensorboard(stage)`, the run's reporters and seed
        (unless the section sets them), CPU where no CUDA is present. Returns (args, callbacks).

        Also seeds python, numpy and torch with the stage's seed now: what a stage builds before its Trainer (a
        score head, a LoRA adapter's initial A matrices) must not depend on what ran earlier in the process
        (`transformers.Trainer` seeds only once it is constructed, after the model exists)."""
        section = self._section_name(cfg)
        raw = (cfg.raw.get(section) or {}) if section else {}
        run = cfg.section("run")
        reporters = self.report_to if "report_to" in raw else run.report_to
        reporters = [reporters] if isinstance(reporters, str) else list(reporters or [])
        reporters = [r for r in reporters if r != "none"]
        new: dict[str, Any] = {"output_dir": str(layout.checkpoints(stage)),
                               "report_to": [r for r in reporters if r != "tensorboard"] or "none",
                               "run_name": raw.get("run_name") or f"{run.name}-{stage}"}
        if "seed" not in raw:
            new["seed"] = run.seed
        if not _cuda():
            new["use_cpu"] = True
        new.update(changes)
        try:
            args = dataclasses.replace(self, **new)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{section or 'training'}: {str(err).splitlines()[0]}") from None
        transformers.set_seed(args.seed)
        callbacks = []
        if "tensorboard" in reporters:
            from transformers.integrations import TensorBoardCallback

            callback = TensorBoardCallback()
            # transformers 5 has no `logging_dir` argument: the callback (re)opens its writer in this folder.
            callback.logging_dir = str(layout.tensorboard(stage))
            callbacks.append(callback)
        return args, callbacks

    def _section_name(self, cfg) -> str | None:
        from .config import SECTIONS

        for name, target in SECTIONS.items():
            if target.endswith(":" + type(self).__name__):
                return name
        return None

    def check_steps(self, num_examples: int, world_size: int = 1, key: str = "num_train_epochs") -> int:
        """The optimizer steps this run will take; 0 is a config error naming the key (no silent no-op)."""
        if self.max_steps is not None and self.max_steps > 0:
            return int(self.max_steps)
        per_step = self.per_device_train_batch_size * self.gradient_accumulation_steps * max(1, world_size)
        batches = math.ceil(num_examples / (self.per_device_train_batch_size * max(1, world_size)))
        steps = math.floor(batches / self.gradient_accumulation_steps * self.num_train_epochs)
        if num_examples <= 0 or steps <= 0:
            raise ConfigError(f"{key}: {num_examples} training examples at {per_step} per optimizer step and "
                              f"{self.num_train_epochs} epochs give no optimizer step; train longer or on more data")
        return steps


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# (current name, older name): transformers 5.2x renamed gradient_checkpointing* to activation_checkpointing* and
# warns on the old names; 5.17 (the GPU machine's) knows only the old ones and rejects the new.
CHECKPOINTING_KEYS = (("activation_checkpointing", "gradient_checkpointing"),
                      ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs"))


def checkpointing_keys(values: dict, known: set[str], prefix: str = "") -> dict:
    """The one place that reconciles the two names of activation checkpointing: a config may use either
    (`activation_checkpointing` is the documented one); it reaches TrainingArguments under the name the
    installed transformers takes, so neither version warns or rejects it. Both names with different values is
    an error."""
    out = dict(values)
    for new, old in CHECKPOINTING_KEYS:
        if new in out and old in out and out[new] == out[old]:
            del out[old]  # a resolved config written back (both names mirror each other)
        if new in out and old in out:
            raise ConfigError(f"{prefix + '.' if prefix else ''}{new} and {old}: the same setting under two names; "
                              f"keep {new}")
        if new in known:
            if old in out:
                out[new] = out.pop(old)
        elif new in out:
            out[old] = out.pop(new)
    return out


def activation_checkpointing_on(args) -> bool:
    """Whether `args` (any TrainingArguments) turn activation checkpointing on, under either name."""
    return bool(getattr(args, "activation_checkpointing", None) or getattr(args, "gradient_checkpointing", None))


# --------------------------------------------------------------------------- checkpoints
def is_complete_checkpoint(path: str | Path, required: tuple[str, ...] = ()) -> bool:
    return all(os.path.isfile(os.path.join(path, f)) for f in (TRAINER_STATE, *required))


def resolve_resume(resume: str | bool | None, checkpoint_dir: str | Path,
                   required: tuple[str, ...] = ()) -> str | None:
    """The checkpoint to resume from. `latest`/True: the newest complete `checkpoint-N` in `checkpoint_dir`
    (None, with a warning, when there is none: the stage starts from scratch); a path: that checkpoint,
    which must be complete; None/False/"": no resume."""
    if resume in (None, False, ""):
        return None
    if resume is True or resume == "latest":
        found = []
        if os.path.isdir(checkpoint_dir):
            for name in os.listdir(checkpoint_dir):
                m = re.fullmatch(r"checkpoint-(\d+)", name)
                full = os.path.join(checkpoint_dir, name)
                if m and is_complete_checkpoint(full, required):
                    found.append((int(m.group(1)), full))
        if not found:
            log.warning("--resume: no complete checkpoint in %s; starting from scratch", checkpoint_dir)
            return None
        return max(found)[1]
    path = str(resume)
    if not os.path.isdir(path):
        raise ConfigError(f"--resume {path}: no such checkpoint folder")
    if not is_complete_checkpoint(path, required):
        missing = [f for f in (TRAINER_STATE, *required) if not os.path.isfile(os.path.join(path, f))]
        raise ConfigError(f"--resume {path}: not a complete checkpoint (missing {', '.join(missing)})")
    return path


class AtomicCheckpointMixin:
    """Mix into a `transformers.Trainer`: atomic checkpoints with the stage's extra state.

    Subclasses override `extra_checkpoint_state(folder)` to write their own files into a checkpoint before it
    is renamed into place, `load_extra_checkpoint_state(folder)` to read them on resume, and list those files in
    `checkpoint_required_files` (a checkpoint without them is incomplete).
    """

    checkpoint_required_files: tuple[str, ...] = ()
    _staging_root: str | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from .logs import quiet_progress

        quiet_progress(self)  # progress bar on the terminal, per-step metric dicts in the stage's log file
        # fp32 LoRA adapters on a bf16 model: no input copies where autocast runs the matmul in bf16 anyway
        skip_lora_input_cast_under_autocast(self.model)

    def _issue_warnings_after_load(self, load_result) -> None:
        """On resume, an output embedding tied to the input embedding is not in the checkpoint (it is not saved
        twice): re-tie it instead of warning that `lm_head.weight` is missing. Any other key: the warning."""
        missing = set(load_result.missing_keys)
        if missing and not load_result.unexpected_keys and missing <= _tied_output_keys(self.model):
            self.model.tie_weights()
            log.debug("resume: %s tied to the input embeddings (not saved separately)", sorted(missing))
            return
        super()._issue_warnings_after_load(load_result)

    def extra_checkpoint_state(self, folder: str) -> None:
        """Write stage-specific state into the staged checkpoint `folder` (rank 0 only)."""

    def load_extra_checkpoint_state(self, folder: str) -> None:
        """Restore what `extra_checkpoint_state` wrote, before training resumes."""

    def gather_checkpoint_state(self) -> None:
        """Called on every rank before saving (collectives go here, e.g. summing λ accumulators)."""

    def _get_output_dir(self, trial) -> str:
        return self._staging_root or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        root = super()._get_output_dir(trial)
        name = f"checkpoint-{self.state.global_step}"
        staging = os.path.join(root, STAGING)
        staged, final = os.path.join(staging, name), os.path.join(root, name)
        self._staging_root = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        self.gather_checkpoint_state()
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            self.extra_checkpoint_state(staged)
            if self.state.best_model_checkpoint == staged:
                self.state.best_model_checkpoint = final
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE))
            if os.path.isdir(final):  # the same step saved twice (e.g. the end of training)
                old = os.path.join(staging, name + ".old")
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(staged, final)
            try:
                os.rmdir(staging)
            except OSError:
                pass
            rotate_checkpoints(root, self.args.save_total_limit, self.state.best_model_checkpoint)
        self.accelerator.wait_for_everyone()

    def train(self, resume_from_checkpoint=None, **kwargs):
        if self.args.should_save:  # a kill mid-save leaves a staging folder behind: never a checkpoint
            shutil.rmtree(os.path.join(self.args.output_dir, STAGING), ignore_errors=True)
        resume = resolve_resume(resume_from_checkpoint, self.args.output_dir, self.checkpoint_required_files)
        if resume:
            self.load_extra_checkpoint_state(resume)
            log.info("resuming from %s", resume)
        return super().train(resume_from_checkpoint=resume, **kwargs)


def _tied_output_keys(model) -> set[str]:
    """Parameter names of the output embedding when the model ties it to the input embedding."""
    config = getattr(model, "config", None)
    get_out = getattr(model, "get_output_embeddings", None)
    if not getattr(config, "tie_word_embeddings", False) or get_out is None or get_out() is None:
        return set()
    out = get_out()
    return {f"{name}.weight" for name, module in model.named_modules() if module is out}


class CheckpointedTrainer(AtomicCheckpointMixin, transformers.Trainer):
    """A plain `transformers.Trainer` with atomic checkpoints (SFT, the distillation student)."""
