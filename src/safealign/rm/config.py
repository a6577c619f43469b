"""Config section `reward`: the helpful reward model and the harmless cost model.

Extends `transformers.TrainingArguments`, so every Trainer setting can be given in the YAML section too.
Defaults differ from TrainingArguments' where a reward model needs it (seed recipe: lr 2e-5, batch 16,
2 epochs, AdamW, max_grad_norm 1.0; eval/save by steps and keep the best by validation accuracy).
"""

from __future__ import annotations

import dataclasses

from transformers import TrainingArguments

from ..errors import ConfigError


@dataclasses.dataclass
class RewardConfig(TrainingArguments):
    """Reward / cost model training. `model_name_or_path: None` means the run's base model."""

    model_name_or_path: str | None = None
    # Judges to use instead of training them in this run (every stage reads these through RunLayout.judge).
    helpful_rm_path: str | None = None
    harmless_rm_path: str | None = None
    max_length: int = 512
    sign_loss_weight: float = 1.0  # cost model: weight of -log σ(s·c) (c > 0 ⇔ unsafe)
    center_coeff: float = 0.0  # reward centering (r_w + r_l)²; 0 turns it off
    include_single_response: bool = True  # add BeaverTails-style rows (safety_train.jsonl) to the sign term
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = dataclasses.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])

    # TrainingArguments fields with reward-model defaults.
    output_dir: str | None = "runs/run/checkpoints/rm"  # run_train_rm points it at <run dir>/checkpoints/<dim>_rm
    learning_rate: float = 2e-5
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 32
    num_train_epochs: float = 2.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    warmup_steps: float = 0.03
    lr_scheduler_type: str = "cosine"
    logging_steps: float = 10
    eval_strategy: str = "steps"
    eval_steps: float | None = 50
    save_strategy: str = "steps"
    save_steps: float = 50
    save_total_limit: int | None = 2
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "accuracy"  # pairwise accuracy; `sign_accuracy`/`auroc` for the cost model
    greater_is_better: bool | None = True
    remove_unused_columns: bool = False
    bf16: bool | None = None  # None: on only where CUDA supports it
    report_to: None | str | list[str] = None  # None: the run section's report_to
    disable_tqdm: bool | None = False

    def __post_init__(self):
        import torch

        if self.bf16 is None:
            self.bf16 = bool(not self.use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator (warns on every eval otherwise)
        if self.report_to is None:
            self.report_to = ["tensorboard"]
        checks = [
            ("learning_rate", self.learning_rate > 0, "must be > 0"),
            ("max_length", self.max_length >= 8, "must be >= 8"),
            ("sign_loss_weight", self.sign_loss_weight >= 0, "must be >= 0"),
            ("center_coeff", self.center_coeff >= 0, "must be >= 0"),
            ("per_device_train_batch_size", self.per_device_train_batch_size >= 1, "must be >= 1"),
            ("per_device_eval_batch_size", self.per_device_eval_batch_size >= 1, "must be >= 1"),
            ("num_train_epochs", self.num_train_epochs > 0 or self.max_steps > 0, "must be > 0"),
            ("max_grad_norm", self.max_grad_norm >= 0, "must be >= 0"),
            ("lora_r", self.lora_r > 0, "must be > 0"),
            ("lora_alpha", self.lora_alpha > 0, "must be > 0"),
            ("lora_dropout", 0 <= self.lora_dropout < 1, "must be in [0, 1)"),
        ]
        for key, ok, what in checks:
            if not ok:
                raise ConfigError(f"{key}: {what} (got {getattr(self, key)!r})")
        if self.metric_for_best_model not in (None, "accuracy", "sign_accuracy", "auroc", "loss",
                                              "eval_accuracy", "eval_sign_accuracy", "eval_auroc", "eval_loss"):
            raise ConfigError(f"metric_for_best_model: one of accuracy, sign_accuracy, auroc, loss "
                              f"(got {self.metric_for_best_model!r})")
        if self.metric_for_best_model in ("loss", "eval_loss") and self.greater_is_better:
            self.greater_is_better = False
        try:
            super().__post_init__()
        except ValueError as err:  # TrainingArguments' own checks, as one line naming the problem
            raise ConfigError(str(err).splitlines()[0].lstrip("- ")) from None
