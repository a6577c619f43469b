"""Config section `dpo`: Safe-MM-DPO settings on top of `transformers.TrainingArguments`.

Seed defaults follow the method's recipe (lr 5e-7, batch 16 x 4 accumulation, 2 epochs, ...); a tiny toy
model needs a far larger learning rate (see docs/safe_mm_dpo.md).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from transformers import TrainingArguments

from ..errors import ConfigError

ALGORITHMS = ("dpo", "mm_dpo", "safe_dpo", "safe_mm_dpo")


@dataclasses.dataclass
class SafeDPOConfig(TrainingArguments):
    """Safe-MM-DPO (and its ablations) as TrainingArguments.

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
    padding_free: pack the micro-batch's sequences into rows without padding (position_ids restarting per
              sequence; dpo/packing.py) for the policy and online-reference forwards; same loss, fewer tokens.
    """

    algorithm: Literal["dpo", "mm_dpo", "safe_dpo", "safe_mm_dpo"] = "safe_mm_dpo"
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
    padding_free: bool = False
    max_length: int = 512
    max_prompt_length: int = 256
    precompute_tokens_per_batch: int = 8192
    policy_name_or_path: str | None = None
    helpful_rm_path: str | None = None
    harmless_rm_path: str | None = None
    merge_lora_on_export: bool = False
    max_nan_steps: int = 10

    # Seed defaults that differ from TrainingArguments'.
    learning_rate: float = 5e-7
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 16
    gradient_accumulation_steps: int = 4
    num_train_epochs: float = 2.0
    max_grad_norm: float = 1.0
    warmup_steps: float = 100
    save_steps: float = 500
    eval_steps: float | None = 250
    eval_strategy: str = "steps"
    save_strategy: str = "steps"
    logging_steps: float = 10
    # λ-free validation metric: L_H + L_S with equal weights (λ changes during training, so loss_total
    # measured at different steps is not comparable).
    metric_for_best_model: str | None = "dual_loss"
    greater_is_better: bool | None = False
    bf16: bool | None = None  # None: on where CUDA supports it, off elsewhere
    remove_unused_columns: bool = False
    ddp_find_unused_parameters: bool | None = False  # every parameter takes part in the pair forward
    report_to: None | str | list[str] = "none"  # run_train_dpo takes it from the `run` section

    def __post_init__(self):
        positive = ("beta_ori", "beta_min", "max_length", "max_prompt_length", "lambda_update_steps",
                    "on_policy_every", "on_policy_num_prompts", "on_policy_max_new_tokens", "max_nan_steps",
                    "precompute_tokens_per_batch")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0 (got {getattr(self, name)})")
        for name in ("lambda_init", "kl_coeff", "lambda_lr", "k"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0 (got {getattr(self, name)})")
        if self.w < 0:
            raise ConfigError(f"w: must be >= 0 (got {self.w})")
        if self.beta_min > self.beta_ori:
            raise ConfigError(f"beta_min: must be <= beta_ori ({self.beta_ori}) (got {self.beta_min})")
        if self.lambda_max is not None and self.lambda_max < self.lambda_init:
            raise ConfigError(f"lambda_max: must be >= lambda_init ({self.lambda_init}) (got {self.lambda_max})")
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(f"max_prompt_length: must be < max_length ({self.max_length})")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0 (got {self.learning_rate})")
        import torch

        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if self.bf16 is None:
            self.bf16 = cuda_bf16
        elif self.bf16 and not cuda_bf16:
            raise ConfigError("bf16: needs a CUDA GPU with bfloat16 support; set it to false here")
        self.remove_unused_columns = False  # the collator needs every field
        super().__post_init__()

    @property
    def is_safe(self) -> bool:
        return self.algorithm in ("safe_dpo", "safe_mm_dpo")

    @property
    def dynamic_beta(self) -> bool:
        return self.algorithm in ("mm_dpo", "safe_mm_dpo")
