"""Config section `sweep`: the λ_init × w grid, how long each point trains, how the best point is chosen."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from ..errors import ConfigError


@dataclasses.dataclass
class SweepConfig:
    """Section `sweep`: the grid, the training length of each point and the selection rule."""

    lambda_init: list[float] = dataclasses.field(default_factory=lambda: [0.5, 1.0, 2.0])
    w: list[float] = dataclasses.field(default_factory=lambda: [0.3, 0.5, 1.0])
    num_train_epochs: float = 1.0
    val_prompts: int = 100  # harmful validation prompts (and at most as many benign ones for helpfulness)
    safety_threshold: float = 0.8  # a point passes when its safety rate is strictly above this
    helpfulness: Literal["auto", "mt-bench", "helpful-rm", "toy", "tradeoff"] = "auto"
    output_dir: str | None = None  # default <run dir>/sweep
    keep_models: bool = True  # False: delete each point's model once it is evaluated (saves disk on 7B)

    def __post_init__(self):
        if not self.lambda_init or not self.w:
            raise ConfigError("lambda_init: the grid needs at least one lambda_init and one w")
        for name in ("lambda_init", "w"):
            for i, v in enumerate(getattr(self, name)):
                if v < 0 or not math.isfinite(v):
                    raise ConfigError(f"{name}[{i}]: must be a finite number >= 0 (got {v})")
        if self.num_train_epochs <= 0:
            raise ConfigError(f"num_train_epochs: must be > 0 (got {self.num_train_epochs})")
        if self.val_prompts <= 0:
            raise ConfigError(f"val_prompts: must be > 0 (got {self.val_prompts})")
        if not 0 <= self.safety_threshold <= 1:
            raise ConfigError(f"safety_threshold: must be in [0, 1] (got {self.safety_threshold})")
