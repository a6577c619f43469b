"""The Lagrange multiplier λ: state kept outside the optimizer, updated by projected dual ascent.

    λ ← clip(λ + λ_lr · (J_C − threshold), 0, lambda_max)      every `lambda_update_steps` optimizer steps

J_C is the weighted mean of the estimates accumulated since the last update (Σ w·J / Σ w: a batch
estimate weighs by its constraint weight, `losses.constraint_terms`), summed over all processes before
dividing (so every rank computes the same λ). The state (λ, the accumulators, the step counter and the
trajectory) is saved as `safealign_state.json` in every checkpoint and restored on resume.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from ..fileio import read_json, write_json
from ..losses import lagrange_update

STATE_FILE = "safealign_state.json"


def all_reduce_sum(values: list[float], device=None) -> list[float]:
    """Sum a few floats over every process (identity without torch.distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t.tolist()


class JsonState:
    """to_dict / from_dict / save / load of a dataclass state kept as `STATE_FILE` in a checkpoint."""

    STATE_FILE = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, folder: str | Path) -> None:
        write_json(Path(folder) / self.STATE_FILE, self.to_dict())

    @classmethod
    def read(cls, folder: str | Path):
        return cls.from_dict(read_json(Path(folder) / cls.STATE_FILE))


@dataclasses.dataclass
class LagrangeState(JsonState):
    STATE_FILE = STATE_FILE
    lam: float = 1.0
    jc_sum: float = 0.0  # this process's Σ w·J since the last update
    jc_count: float = 0.0  # ... and its Σ w
    steps: int = 0  # optimizer steps seen
    last_jc: float | None = None
    history: list = dataclasses.field(default_factory=list)  # [[step, λ after the update, J_C], ...]
    nan_steps_total: int = 0
    nan_steps_in_a_row: int = 0

    def accumulate(self, jc: float, weight: float = 1.0) -> None:
        """Add one estimate `jc` with weight `weight` (a non-finite estimate or a zero weight is skipped)."""
        if math.isfinite(jc) and math.isfinite(weight) and weight > 0:
            self.jc_sum += float(jc) * float(weight)
            self.jc_count += float(weight)

    def step(self, lr: float, threshold: float, lambda_max: float | None, every: int, device=None) -> bool:
        """Count one optimizer step; every `every` steps apply the dual update. True when λ changed."""
        self.steps += 1
        if self.steps % every:
            return False
        total, count = all_reduce_sum([self.jc_sum, float(self.jc_count)], device)
        self.jc_sum, self.jc_count = 0.0, 0.0
        if count <= 0:  # no estimate arrived (e.g. on-policy sampling not due yet): keep λ
            return False
        jc = total / count
        self.lam = lagrange_update(self.lam, jc, lr, threshold, lambda_max)
        self.last_jc = jc
        self.history.append([self.steps, self.lam, jc])
        return True

    @classmethod
    def load(cls, folder: str | Path) -> "LagrangeState":
        return cls.read(folder)
