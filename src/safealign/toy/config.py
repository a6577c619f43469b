"""Config section `toy`: size, seed and knobs of a generated toy world (`data.dataset: toy` or `tradeoff`).

The demo world (`toy`) reads num_pairs, seed and harmful_fraction; the trade-off world (`tradeoff`,
`toy.tradeoff.TradeoffConfig`) reads every knob. harmful_fraction None: each world's own default.
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from .tradeoff import TradeoffConfig

WORLDS = ("toy", "tradeoff")
DEFAULT_HARMFUL_FRACTION = {"toy": 0.5, "tradeoff": 0.4}


@dataclasses.dataclass
class ToyWorldConfig:
    """Size, seed and difficulty knobs of the generated toy worlds."""

    num_pairs: int = 3000
    seed: int = 0
    harmful_fraction: float | None = None  # share of pairs whose prompt is harmful (None: 0.5 toy, 0.4 tradeoff)
    # the trade-off world only (see toy/tradeoff.py)
    borderline_fraction: float = 0.2
    conflict_rate: float = 0.6
    flip_helpful: float = 0.1
    flip_safety: float = 0.05
    borderline_refusal_safer: float = 0.5
    category_rates: dict | None = None

    def __post_init__(self):
        if self.num_pairs <= 0:
            raise ConfigError(f"num_pairs: must be > 0 (got {self.num_pairs})")
        if self.harmful_fraction is not None and not 0 <= self.harmful_fraction <= 1:
            raise ConfigError(f"harmful_fraction: must be in [0, 1] (got {self.harmful_fraction})")
        # the trade-off knobs' own checks (their sum with harmful_fraction is checked when that world is made)
        self._tradeoff(harmful_fraction=0.0)

    def world_kwargs(self, world: str) -> dict:
        """The generator's keyword arguments for `world` (toy | tradeoff)."""
        fraction = (DEFAULT_HARMFUL_FRACTION[world] if self.harmful_fraction is None else self.harmful_fraction)
        if world == "toy":
            return {"num_pairs": self.num_pairs, "seed": self.seed, "harmful_fraction": fraction}
        if world != "tradeoff":
            raise ConfigError(f"data.dataset: not a toy world: {world!r} (worlds: {', '.join(WORLDS)})")
        return {"cfg": self._tradeoff(harmful_fraction=fraction)}

    def _tradeoff(self, **over) -> TradeoffConfig:
        knobs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | over
        try:
            return TradeoffConfig(**knobs)
        except ConfigError as err:  # named as a key of this section wherever it is raised
            raise ConfigError(f"toy.{err}") from None
