"""Config section `toy`: size and seed of the generated toy world (used when `data.dataset: toy`)."""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError


@dataclasses.dataclass
class ToyWorldConfig:
    """Size and seed of the generated toy safety world (used when `data.dataset: toy`)."""

    num_pairs: int = 3000
    seed: int = 0
    harmful_fraction: float = 0.5  # share of pairs whose prompt is harmful

    def __post_init__(self):
        if self.num_pairs <= 0:
            raise ConfigError(f"num_pairs: must be > 0 (got {self.num_pairs})")
        if not 0 <= self.harmful_fraction <= 1:
            raise ConfigError(f"harmful_fraction: must be in [0, 1] (got {self.harmful_fraction})")
