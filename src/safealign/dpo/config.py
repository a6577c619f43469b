"""Config section `dpo`: Safe-MM-DPO settings on top of the shared `StageArguments`.

Only what is DPO's own lives here (the algorithm, β, λ, the J_C estimator, precompute); bf16, reporting,
`max_length`/`max_prompt_length` and the common checks come from `safealign.training.StageArguments`.
Seed defaults follow the method's recipe (lr 5e-7, batch 16 x 4 accumulation, 2 epochs, ...); a tiny toy
model needs a far larger learning rate (see docs/safe_mm_dpo.md).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..errors import ConfigError
from ..training import StageArguments

# The one list of alignment algorithms (the pipeline's ablations and the sweep read it from here).
ALGORITHMS = ("dpo", "mm_dpo", "safe_dpo", "safe_mm_dpo")
Algorithm = Literal[ALGORITHMS]  # type: ignore[valid-type]  # Literal[("a", "b")] == Literal["a", "b"]


@dataclasses.dataclass
class SafeDPOConfig(StageArguments):
    """Safe-MM-DPO (and its ablations) as training arguments.

    algorithm: dpo (fixed β, helpful pairs only) | mm_dpo (dynamic β, helpful only)
               | safe_dpo (fixed β, helpful + λ·safety) | safe_mm_dpo (dynamic β, helpful + λ·safety).
    beta_min: lower clamp of the dynamic β. A pair whose judge margin contradicts its label (δ < 0) gets a
              β below β_ori; the clamp keeps it > 0 so the loss never flips sign (1e-3 = 1% of β_ori).
    jc_estimator: `batch` (default) estimates J_C from the policy's current preference between the two
              stored responses of each training batch (free: reuses the training forward and the cached
              costs); `on_policy` samples answers from the policy every `on_policy_every` steps and scores them
              with the cost model, which then stays resident (one more model in memory, plus generation time).
    precompute: True caches reference log-probs and RM scores before training (only the policy resident);
              False = online mode (reference and both RMs resident, computed per batch).
    The judges are the run's reward models (`RunLayout.judge`; `reward.helpful_rm_path` /
    `reward.harmless_rm_path` point elsewhere); the starting policy is `RunLayout.policy_start`.
    """

    algorithm: Algorithm = "safe_mm_dpo"
    lambda_init: float = 1.0
    w: float = 0.5
    k: float = 0.5
    beta_ori: float = 0.1
    beta_min: float = 1e-3
    kl_coeff: float = 0.1
    lambda_lr: float = 0.01
    cost_threshold: float = 0.0
    lambda_max: float | None = None
    lambda_update_steps: int = 1
    jc_estimator: Literal["batch", "on_policy"] = "batch"
    on_policy_every: int = 50
    on_policy_num_prompts: int = 8
    on_policy_max_new_tokens: int = 64
    precompute: bool = True
    precompute_tokens_per_batch: int = 8192
    merge_lora_on_export: bool = False
    max_nan_steps: int = 10

    # Seed defaults that differ from StageArguments'.
    learning_rate: float = 5e-7
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 16
    gradient_accumulation_steps: int = 4
    num_train_epochs: float = 2.0
    warmup_steps: float = 100
    save_steps: float = 500
    save_total_limit: int | None = None  # every checkpoint kept, as before the shared base (which keeps 2)
    eval_steps: float | None = 250
    eval_strategy: str = "steps"
    save_strategy: str = "steps"
    # λ-free validation metric: L_H + L_S with equal weights (λ changes during training, so loss_total
    # measured at different steps is not comparable).
    metric_for_best_model: str | None = "dual_loss"
    greater_is_better: bool | None = False
    ddp_find_unused_parameters: bool | None = False  # every parameter takes part in the pair forward

    def __post_init__(self):
        positive = ("beta_ori", "beta_min", "lambda_update_steps", "on_policy_every", "on_policy_num_prompts",
                    "on_policy_max_new_tokens", "max_nan_steps", "precompute_tokens_per_batch")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0 (got {getattr(self, name)})")
        for name in ("lambda_init", "kl_coeff", "lambda_lr", "k", "w"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0 (got {getattr(self, name)})")
        if self.beta_min > self.beta_ori:
            raise ConfigError(f"beta_min: must be <= beta_ori ({self.beta_ori}) (got {self.beta_min})")
        if self.lambda_max is not None and self.lambda_max < self.lambda_init:
            raise ConfigError(f"lambda_max: must be >= lambda_init ({self.lambda_init}) (got {self.lambda_max})")
        super().__post_init__()

    @property
    def is_safe(self) -> bool:
        return self.algorithm in ("safe_dpo", "safe_mm_dpo")

    @property
    def dynamic_beta(self) -> bool:
        return self.algorithm in ("mm_dpo", "safe_mm_dpo")
