"""Section `sft`: the optional warm-up of the base policy. Only what differs from `StageArguments` lives here.

The shared checks (max_length, learning rate, batch sizes, bf16 policy, zero-step schedules) are the base's;
the checkpoint folder, reporters and TensorBoard folder come from `StageArguments.fit_to_run`.
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..training import StageArguments


@dataclasses.dataclass
class SFTStageConfig(StageArguments):
    """Section `sft`: response-only SFT of the base policy on the chosen (more helpful) answers.

    `seed` is the stage's own (TrainingArguments' 42 unless set), not `run.seed`: the demo's numbers were
    measured with it.
    """

    enabled: bool = False  # the pipeline runs the warm-up only when true
    max_train_examples: int | None = None  # cap on the warm-up set (None: all of train.jsonl)
    # Seed defaults for a warm-up: a light touch, one pass over the data.
    learning_rate: float = 2e-5
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 16
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"

    def __post_init__(self):
        if self.max_train_examples is not None and self.max_train_examples <= 0:
            raise ConfigError(f"max_train_examples: must be > 0 (got {self.max_train_examples})")
        super().__post_init__()
