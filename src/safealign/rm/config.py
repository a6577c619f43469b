"""Config section `reward`: the helpful reward model and the harmless cost model.

Extends the shared `StageArguments` (bf16 policy, reporting, `max_length`, the common checks), so every
Trainer setting can be given in the YAML section too. Only the reward model's own settings live here, and
the seed recipe's defaults where they differ (lr 2e-5, batch 16, 2 epochs, AdamW, cosine schedule; eval/save
by steps, keep the best by validation accuracy).

The model is the `model` section's (base, dtype, LoRA, 4-bit); `reward.model` overrides some of its fields
for the reward models only, e.g. `reward: {model: {use_lora: true}}` trains LoRA judges with `model.lora_r`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ConfigError
from ..models.config import ModelConfig
from ..training import StageArguments

METRICS = ("accuracy", "sign_accuracy", "auroc", "loss")


@dataclasses.dataclass
class RewardConfig(StageArguments):
    """Reward / cost model training."""

    # Fields of the `model` section replaced for the reward models (validated as the `model` section is).
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Judges to use instead of training them in this run (every stage reads these through RunLayout.judge).
    helpful_rm_path: str | None = None
    harmless_rm_path: str | None = None
    sign_loss_weight: float = 1.0  # cost model: weight of -log σ(s·c) (c > 0 ⇔ unsafe)
    center_coeff: float = 0.0  # reward centering (r_w + r_l)²; 0 turns it off
    include_single_response: bool = True  # add BeaverTails-style rows (safety_train.jsonl) to the sign term

    # Seed defaults that differ from StageArguments'.
    learning_rate: float = 2e-5
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 32
    num_train_epochs: float = 2.0
    optim: str = "adamw_torch"
    warmup_steps: float = 0.03
    lr_scheduler_type: str = "cosine"
    eval_strategy: str = "steps"
    eval_steps: float | None = 50
    save_strategy: str = "steps"
    save_steps: float = 50
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "accuracy"  # pairwise accuracy; `sign_accuracy`/`auroc` for the cost model
    greater_is_better: bool | None = True

    def __post_init__(self):
        for key in ("sign_loss_weight", "center_coeff"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0 (got {getattr(self, key)!r})")
        ModelConfig().with_overrides(self.model, "reward.model")  # unknown keys and wrong types fail here
        if self.metric_for_best_model not in (None, *METRICS, *(f"eval_{m}" for m in METRICS)):
            raise ConfigError(f"metric_for_best_model: one of {', '.join(METRICS)} "
                              f"(got {self.metric_for_best_model!r})")
        if self.metric_for_best_model in ("loss", "eval_loss") and self.greater_is_better:
            self.greater_is_better = False
        super().__post_init__()

    def model_config(self, model: ModelConfig) -> ModelConfig:
        """The reward models' model settings: the `model` section with `reward.model` applied."""
        return model.with_overrides(self.model, "reward.model")
