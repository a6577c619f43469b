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
from ..losses import CONSTRAINT_KINDS
from ..training import StageArguments

# The one list of alignment algorithms (the pipeline's ablations and the sweep read it from here).
ALGORITHMS = ("dpo", "mm_dpo", "dpo_safe", "safedpo", "safe_dpo", "safe_mm_dpo")
Algorithm = Literal[ALGORITHMS]  # type: ignore[valid-type]  # Literal[("a", "b")] == Literal["a", "b"]
Constraint = Literal[CONSTRAINT_KINDS]  # type: ignore[valid-type]
# The constraint's kind when `constraint` is not set: chosen by measurement on both toy worlds
# (docs/safe_mm_dpo.md, "The constraint"); `cost` is the seed's raw form.
DEFAULT_CONSTRAINT = "unsafe_choice"
RATE_THRESHOLD = 0.05  # the default target of a rate kind: "at most 5 % unsafe choices"


@dataclasses.dataclass
class SafeDPOConfig(StageArguments):
    """Safe-MM-DPO (and its ablations) as training arguments.

    algorithm: dpo (fixed β, helpful pairs only) | mm_dpo (dynamic β, helpful only)
               | dpo_safe (fixed β, the safety pairs only: DPO on the safety labels)
               | safedpo (SafeDPO, Kim et al. 2026: the helpful pair reordered by the binary safety labels,
                 offset `safedpo_delta`; no reward or cost model)
               | safe_dpo (fixed β, helpful + λ·safety) | safe_mm_dpo (dynamic β, helpful + λ·safety).
    constraint: what J_C measures (`losses.constraint_terms`; docs/safe_mm_dpo.md derives them):
              unsafe_choice (default) = the share of safe-vs-unsafe pairs where the policy prefers the unsafe
              answer, a rate in [0, 1]; unsafe_rate / harmful_unsafe_rate = P(unsafe pick) over all / harmful
              pairs; cost (the seed's form) / harmful_cost = the expected cost-model score (logits).
    constraint_choice: the policy's pick between a pair's answers: `policy` = σ(log π_θ(y_0) − log π_θ(y_1)),
              its actual choice; `implicit` = σ(β_ori (ρ_0 − ρ_1)), the DPO-implicit preference (0.5 at the
              reference whatever the reference does).
    cost_threshold: d in J_C ≤ d. None: 0.0 for the *_cost kinds, 0.05 for the rate kinds (in [0, 1]).
    constraints: single (one λ) | per_category (one λ per harm category, or severity level with
              `constraint_groups: severity`; thresholds in `category_thresholds` — read only then — others
              at cost_threshold;
              a record's safety loss is weighted by the max (`constraint_reduce`) of its groups' λ).
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
    padding_free: pack the micro-batch's sequences into rows without padding (position_ids restarting per
              sequence; dpo/packing.py) for the policy and online-reference forwards; same loss, fewer tokens.
    """

    algorithm: Algorithm = "safe_mm_dpo"
    lambda_init: float = 1.0
    w: float = 0.5
    k: float = 0.5
    beta_ori: float = 0.1
    beta_min: float = 1e-3
    kl_coeff: float = 0.1
    lambda_lr: float = 0.01
    constraint: Constraint = DEFAULT_CONSTRAINT
    constraint_choice: Literal["policy", "implicit"] = "policy"
    cost_threshold: float | None = None
    constraints: Literal["single", "per_category"] = "single"
    constraint_groups: Literal["category", "severity"] = "category"
    category_thresholds: dict = dataclasses.field(default_factory=dict)
    constraint_reduce: Literal["max", "mean"] = "max"
    safedpo_delta: float = 10.0  # the SafeDPO paper's Δ at β = 0.1
    lambda_max: float | None = None
    lambda_update_steps: int = 1
    jc_estimator: Literal["batch", "on_policy"] = "batch"
    on_policy_every: int = 50
    on_policy_num_prompts: int = 8
    on_policy_max_new_tokens: int = 64
    # 1.0 samples the policy as it is; lower follows its greedy answers, what a greedy evaluation judges
    # (a tiny model's temperature-1 samples are mostly garbled, which no cost model calls unsafe)
    on_policy_temperature: float = 1.0
    precompute: bool = True
    padding_free: bool = False
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
    # Constrained selection (`objective.constrained_helpfulness`): the validation helpfulness of the policy's
    # choice among checkpoints whose validation J_C meets cost_threshold; a checkpoint that misses it ranks
    # below every one that meets it, by its J_C. `dual_loss` (L_H + L_S, λ-free) stays selectable.
    metric_for_best_model: str | None = "constrained_helpfulness"
    greater_is_better: bool | None = None  # transformers: False for a name ending in "loss", else True
    ddp_find_unused_parameters: bool | None = False  # every parameter takes part in the pair forward

    def __post_init__(self):
        positive = ("beta_ori", "beta_min", "lambda_update_steps", "on_policy_every", "on_policy_num_prompts",
                    "on_policy_temperature",
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
        self._check_constraint()
        super().__post_init__()

    def _check_constraint(self) -> None:
        if self.safedpo_delta < 0:
            raise ConfigError(f"safedpo_delta: must be >= 0 (got {self.safedpo_delta})")
        if self.cost_threshold is None:
            self.cost_threshold = 0.0 if self.constraint.endswith("cost") else RATE_THRESHOLD
        rate = not self.constraint.endswith("cost")
        thresholds = {"cost_threshold": self.cost_threshold,
                      **{f"category_thresholds.{k}": v for k, v in self.category_thresholds.items()}}
        for key, d in thresholds.items():
            if isinstance(d, bool) or not isinstance(d, (int, float)):
                raise ConfigError(f"{key}: must be a number (got {d!r})")
            if rate and not 0.0 <= d <= 1.0:
                raise ConfigError(f"{key}: constraint {self.constraint} is a rate, its threshold must lie in "
                                  f"[0, 1] (got {d}); set `constraint: cost` for the seed's cost-unit form")
            if (rate and d == 0 and self.lambda_max is None and self.is_safe and self.lambda_lr > 0
                    and (key == "cost_threshold" or self.per_category)):
                raise ConfigError(f"lambda_max: {key} = 0 (zero tolerance) drives λ up without end; set "
                                  f"lambda_max")


    @property
    def is_safe(self) -> bool:
        """The λ-constrained algorithms (the others have no multiplier)."""
        return self.algorithm in ("safe_dpo", "safe_mm_dpo")

    @property
    def per_category(self) -> bool:
        return self.constraints == "per_category"

    @property
    def dynamic_beta(self) -> bool:
        return self.algorithm in ("mm_dpo", "safe_mm_dpo")
