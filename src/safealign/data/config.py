"""Config section `data`: where the data stage (`safealign prepare`) reads from, how it cleans and splits."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from ..errors import ConfigError

SCHEMAS = ("auto", "pku2023", "pku2024", "pair", "beavertails")


@dataclasses.dataclass
class DataConfig:
    """Where the preference data comes from and how it is cleaned and split.

    `dataset: toy` generates the built-in toy world, `dataset: tradeoff` the trade-off world (both sized by
    section `toy`); anything else is a Hub dataset id or a local .json/.jsonl/.parquet/.csv file or a folder of
    them; several, comma-separated, are read together (`real.jsonl,toy`: real rows padded with toy-world rows,
    whose `source` is `toy-world`).
    """

    dataset: str = "toy"
    output_dir: str | None = None  # default <run dir>/data
    split: str = "train"  # Hub split
    revision: str | None = None  # Hub revision
    subset: str | None = None  # Hub subset (config name)
    schema: Literal["auto", "pku2023", "pku2024", "pair", "beavertails"] = "auto"
    train_fraction: float = 0.8
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42  # the split's seed
    min_tokens: int | None = None  # whitespace tokens of prompt + response (each response checked)
    max_tokens: int | None = None
    on_error: Literal["raise", "skip"] = "raise"
    show: int = 3  # random records shown in stats.md and printed

    def __post_init__(self):
        if not str(self.dataset).strip():
            raise ConfigError("dataset: must not be empty (use 'toy', a Hub id or a local path)")
        if self.schema not in SCHEMAS:
            raise ConfigError(f"schema: must be one of {', '.join(SCHEMAS)} (got {self.schema!r})")
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error: must be raise or skip (got {self.on_error!r})")
        for name in ("train_fraction", "val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name}: must be in [0, 1] (got {value})")
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(f"train_fraction: train_fraction + val_fraction + test_fraction must sum to 1 "
                              f"(got {total:g})")
        if self.train_fraction <= 0:
            raise ConfigError("train_fraction: must be > 0")
        for name in ("min_tokens", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name}: must be >= 0 (got {value})")
        if self.min_tokens is not None and self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ConfigError(f"min_tokens: must be <= max_tokens ({self.min_tokens} > {self.max_tokens})")
        if self.show < 0:
            raise ConfigError(f"show: must be >= 0 (got {self.show})")

