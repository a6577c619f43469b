"""Section `distill`: prompts, teacher sampling, filters, the student and its fine-tuning.

Only what differs from `StageArguments` lives here. The student is described as overrides of the `model`
section (`distill.student`, resolved by `DistillConfig.model_config`), so loading options and tiny-model fields are
defined once; the judges and the teacher come from the run layout (`layout.judge(dim)`, `layout.aligned()`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from ..config import coerce
from ..errors import ConfigError
from ..models.config import ModelConfig
from ..training import StageArguments

# The demo's student: the policy's tiny model at half the width (hidden 32, MLP 96: 59 k parameters on a
# 1000-token vocabulary).
STUDENT_DEFAULTS = {"tiny_hidden_size": 32, "tiny_intermediate_size": 96}


@dataclasses.dataclass
class DistillConfig(StageArguments):
    """Section `distill`. The TrainingArguments fields configure the student's fine-tuning.

    `seed` is the stage's own (TrainingArguments' 42 unless set), not `run.seed`: it draws the prompts,
    seeds the teacher's samples, the split and the student's initialisation, as the demo was measured.
    """

    enabled: bool = False  # the pipeline runs distillation (last, optional stage) only when true
    teacher_path: str | None = None  # an explicit teacher; default: the run's aligned model
    teacher_name: str | None = None  # results folder of the teacher (default: dpo.algorithm, as the pipeline)
    # The student: overrides of the `model` section, e.g. {name_or_path: TinyLlama/TinyLlama-1.1B-Chat-v1.0,
    # use_lora: false} or {tiny_hidden_size: 16, tiny_num_layers: 1}. A tiny student uses the teacher's
    # tokenizer. Replaces the default mapping as a whole.
    student: dict = dataclasses.field(default_factory=lambda: dict(STUDENT_DEFAULTS))
    # prompts and teacher sampling
    num_prompts: int = 2000
    harmful_fraction: float = 0.5
    samples_per_prompt: int = 4
    max_new_tokens: int = 64
    temperature: float = 0.8  # > 0 so the n answers differ (0 with samples_per_prompt 1: greedy)
    top_p: float = 0.95
    generation_batch_size: int = 32
    generation_backend: Literal["auto", "hf", "vllm"] = "auto"
    # filters
    max_cost: float = 0.0  # keep cost < max_cost
    helpful_quantile: float = 0.5  # keep helpful score >= this quantile
    helpful_scope: Literal["prompt", "global"] = "prompt"  # where the quantile is taken (see distill.filters)
    score_max_tokens_per_batch: int = 8192
    val_fraction: float = 0.05  # of the kept prompts, held out for the validation loss
    # efficiency table
    efficiency_prompts: int = 32
    efficiency_max_new_tokens: int = 32
    efficiency_batch_size: int = 8
    efficiency_repeats: int = 3
    # TrainingArguments with the student's seed defaults
    learning_rate: float = 2e-4
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    num_train_epochs: float = 3.0
    warmup_steps: float = 0.03
    lr_scheduler_type: str = "cosine"
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"

    def __post_init__(self):
        positive = ("num_prompts", "samples_per_prompt", "max_new_tokens", "generation_batch_size",
                    "score_max_tokens_per_batch", "efficiency_prompts", "efficiency_max_new_tokens",
                    "efficiency_batch_size", "efficiency_repeats")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0 (got {getattr(self, name)})")
        for name in ("harmful_fraction", "helpful_quantile"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name}: must be in [0, 1] (got {getattr(self, name)})")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction: must be in [0, 1) (got {self.val_fraction})")
        if self.temperature < 0:
            raise ConfigError(f"temperature: must be >= 0 (got {self.temperature})")
        if self.samples_per_prompt > 1 and self.temperature == 0:
            raise ConfigError("temperature: must be > 0 when samples_per_prompt > 1 (greedy answers are identical)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1] (got {self.top_p})")
        # Names and types now; values that depend on other fields (hidden size vs heads) are checked against
        # the `model` section in `model_config`, which `run_distill` calls before any work.
        hints = typing.get_type_hints(ModelConfig)
        for key, value in list(self.student.items()):
            if key not in hints:
                raise ConfigError(f"student.{key}: not a `model` setting (e.g. name_or_path, use_lora, "
                                  "tiny_hidden_size)")
            self.student[key] = coerce(value, hints[key], f"student.{key}")
        super().__post_init__()

    def model_config(self, model: ModelConfig) -> ModelConfig:
        """The student's model config: the `model` section with `distill.student` applied (checked like it).

        A student with its own `name_or_path` does not inherit the policy's `revision` (a revision names a
        commit of one repository)."""
        overrides = dict(self.student)
        if "name_or_path" in overrides:
            overrides.setdefault("revision", None)
        return model.with_overrides(overrides, "distill.student")
