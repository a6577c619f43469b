"""Per-category constraints: one Lagrange multiplier per harm category (or severity level), each with its own
threshold and dual update, so a user can say "zero tolerance on Violence, looser on Insulting Behavior".

    J_k   = Σ_b w_b v_b [b ∈ k] / Σ_b w_b [b ∈ k]          (v, w from `losses.constraint_terms`)
    λ_k  ← clip(λ_k + λ_lr (J_k − d_k), 0, lambda_max)      every `every` optimizer steps, per group k
    λ_b   = max_{k ∋ b} λ_k                                  the multiplier of record b's safety loss

Groups: `by="category"` — every harm category of the training records (plus any configured one), and
`default` for records without a category (benign prompts, harmful prompts whose answers were both safe);
`by="severity"` — `severity_1..3` from the record's severity, `default` for 0/none.

Why max over a record's categories, not mean: a constraint is violated when *any* of its categories is, so a
record touching Violence and Insulting Behavior must be trained as strictly as Violence demands. The mean
would let a loose tag dilute a strict one — adding a category to a record could *lower* its safety weight,
and a zero-tolerance category could be bought off by co-occurring loose ones. Max is monotone (more tags never
lower the weight) and with one category per record both agree. Its cost: max is not smooth in λ, but λ is
not differentiated (it is a dual variable), so nothing is lost. `reduce="mean"` stays selectable to measure it.

A group with no weighted record in an update window keeps its λ (no evidence, no move). The state is saved as
`safealign_constraints.json` in each checkpoint, like `lagrange.LagrangeState`, and a resume refuses a state
whose groups or thresholds differ from the configured ones (the multipliers would mean something else).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterable

import torch

from ..errors import ConfigError
from .. import losses
from ..losses import lagrange_update
from .lagrange import STATE_FILE as LAGRANGE_FILE
from .lagrange import JsonState, LagrangeState, all_reduce_sum

STATE_FILE = "safealign_constraints.json"
DEFAULT_GROUP = "default"
GROUP_BY = ("category", "severity")
REDUCE = ("max", "mean")


# --------------------------------------------------------------------------- records -> groups
def record_groups(record: dict, by: str = "category", keys: Iterable[str] | None = None) -> list[str]:
    """The constraint groups of one canonical record (`harm_categories`, `severity`). With `keys`, a group
    outside them falls back to `default` (a category unseen in training)."""
    if by == "category":
        groups = [c for c in (record.get("harm_categories") or [])]
    elif by == "severity":
        level = record.get("severity") or 0
        groups = [f"severity_{int(level)}"] if level else []
    else:
        raise ConfigError(f"constraint_groups: must be one of {GROUP_BY} (got {by!r})")
    if keys is not None:
        known = set(keys)
        groups = [g for g in groups if g in known]
    return sorted(set(groups)) or [DEFAULT_GROUP]


def membership(groups_per_record: list[list[str]], keys: list[str]) -> torch.Tensor:
    """(N, K) bool: record n belongs to group keys[k]."""
    index = {k: i for i, k in enumerate(keys)}
    out = torch.zeros((len(groups_per_record), len(keys)), dtype=torch.bool)
    for n, groups in enumerate(groups_per_record):
        for g in groups:
            out[n, index[g]] = True
    return out


# --------------------------------------------------------------------------- pure tensor functions
def record_multipliers(member: torch.Tensor, lambdas: torch.Tensor, reduce: str = "max") -> torch.Tensor:
    """λ_b from the group multipliers: member (B, K) bool, lambdas (K,) ≥ 0 -> (B,). `max` (default, see
    the module docstring) or `mean` over the record's groups; 0 for a record in no group."""
    m = member.to(lambdas.dtype)  # (B, K)
    if reduce == "max":
        # λ ≥ 0, so masking the others to 0 leaves the max over the record's own groups
        return (m * lambdas).max(dim=1).values if m.shape[1] else m.new_zeros(m.shape[0])
    if reduce == "mean":
        return (m * lambdas).sum(1) / m.sum(1).clamp(min=1.0)
    raise ConfigError(f"constraint_reduce: must be one of {REDUCE} (got {reduce!r})")


def group_sums(values: torch.Tensor, weights: torch.Tensor,
               member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group Σ_b w_b v_b [b ∈ k] and Σ_b w_b [b ∈ k]: values, weights (B,), member (B, K) -> (K,), (K,).
    Non-finite values are left out (a NaN batch must not poison a multiplier)."""
    ok = torch.isfinite(values)
    w = torch.where(ok, weights, torch.zeros_like(weights)).double()
    v = torch.where(ok, values, torch.zeros_like(values)).double()
    m = member.double()  # (B, K)
    return (w * v) @ m, w @ m


# --------------------------------------------------------------------------- the state
@dataclasses.dataclass
class GroupedLagrangeState(JsonState):
    """One λ per group with its threshold; accumulators since the last update; the trajectory."""

    STATE_FILE = STATE_FILE
    keys: list[str]
    thresholds: dict[str, float]
    lam: dict[str, float]
    by: str = "category"
    reduce: str = "max"
    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    counts: dict[str, float] = dataclasses.field(default_factory=dict)
    steps: int = 0
    last_jc: dict[str, float] = dataclasses.field(default_factory=dict)
    history: list = dataclasses.field(default_factory=list)  # [[step, {k: λ_k}, {k: J_k updated}], ...]

    def __post_init__(self):
        if self.by not in GROUP_BY:
            raise ConfigError(f"constraint_groups: must be one of {GROUP_BY} (got {self.by!r})")
        if self.reduce not in REDUCE:
            raise ConfigError(f"constraint_reduce: must be one of {REDUCE} (got {self.reduce!r})")
        self.keys = sorted(self.keys)  # one order on every rank: the all-reduce is positional
        for k in self.keys:
            self.sums.setdefault(k, 0.0)
            self.counts.setdefault(k, 0.0)
            if k not in self.thresholds or k not in self.lam:
                raise ConfigError(f"constraints: group {k!r} needs a threshold and an initial λ")

    @classmethod
    def from_records(cls, records: list[dict], by: str = "category", default_threshold: float = 0.05,
                     thresholds: dict[str, float] | None = None, lambda_init: float = 1.0,
                     reduce: str = "max") -> "GroupedLagrangeState":
        """Groups = those of the training records, the configured ones and `default`; a group without its own
        threshold gets `default_threshold`."""
        thresholds = dict(thresholds or {})
        keys = {DEFAULT_GROUP} | set(thresholds)
        for rec in records:
            keys.update(record_groups(rec, by))
        if by == "severity":
            bad = sorted(k for k in thresholds if k != DEFAULT_GROUP and k not in ("severity_1", "severity_2",
                                                                                    "severity_3"))
            if bad:
                raise ConfigError(f"category_thresholds: with constraint_groups=severity the groups are "
                                  f"severity_1..3 and default (got {bad})")
        for k, d in thresholds.items():
            if not isinstance(d, (int, float)) or isinstance(d, bool) or not math.isfinite(d):
                raise ConfigError(f"category_thresholds.{k}: must be a number (got {d!r})")
        return cls(keys=sorted(keys), by=by, reduce=reduce,
                   thresholds={k: float(thresholds.get(k, default_threshold)) for k in keys},
                   lam={k: float(lambda_init) for k in keys})

    def record_groups(self, record: dict) -> list[str]:
        return record_groups(record, self.by, self.keys)

    def membership(self, records: list[dict]) -> torch.Tensor:
        return membership([self.record_groups(r) for r in records], self.keys)

    def lambdas(self, device=None) -> torch.Tensor:
        return torch.tensor([self.lam[k] for k in self.keys], dtype=torch.float32, device=device)

    def multipliers(self, member: torch.Tensor) -> torch.Tensor:
        """λ_b (B,) for a batch's membership (B, K)."""
        return record_multipliers(member, self.lambdas(member.device), self.reduce)

    def accumulate(self, values: torch.Tensor, weights: torch.Tensor, member: torch.Tensor) -> None:
        sums, counts = group_sums(values.detach().cpu(), weights.detach().cpu(), member.cpu())
        for i, k in enumerate(self.keys):
            self.sums[k] += float(sums[i])
            self.counts[k] += float(counts[i])

    def step(self, lr: float, lambda_max: float | None, every: int, device=None) -> bool:
        """Count one optimizer step; every `every` steps update each group that saw data. True if any λ moved."""
        self.steps += 1
        if self.steps % every:
            return False
        reduced = all_reduce_sum([self.sums[k] for k in self.keys] + [self.counts[k] for k in self.keys], device)
        n = len(self.keys)
        updated = {}
        for i, k in enumerate(self.keys):
            self.sums[k], self.counts[k] = 0.0, 0.0
            total, count = reduced[i], reduced[n + i]
            if count <= 0:  # no evidence for this group in the window: keep its λ
                continue
            jc = total / count
            self.lam[k] = lagrange_update(self.lam[k], jc, lr, self.thresholds[k], lambda_max)
            updated[k] = jc
        if not updated:
            return False
        self.last_jc.update(updated)
        self.history.append([self.steps, dict(self.lam), updated])
        return True

    # -- persistence (to_dict / save: JsonState)
    @classmethod
    def load(cls, folder: str | Path, expect: "GroupedLagrangeState | None" = None) -> "GroupedLagrangeState":
        """The saved state; with `expect` (the state built from the current config and data), a ConfigError
        when the groups, thresholds, grouping or reduction differ."""
        path = Path(folder) / STATE_FILE
        state = cls.read(folder)
        if expect is not None:
            for name in ("keys", "thresholds", "by", "reduce"):
                if getattr(state, name) != getattr(expect, name):
                    raise ConfigError(f"{path}: constraint {name} differ from the configured ones "
                                      f"(saved {getattr(state, name)!r}, configured {getattr(expect, name)!r}); "
                                      f"resume with the original settings or start a new run")
        return state


# --------------------------------------------------------------------------- the on-policy estimate
HARMFUL_ONLY = ("harmful_cost", "harmful_unsafe_rate", "unsafe_choice")


def harmful_pool(prompts: list[dict], kind: str) -> list[dict]:
    """The prompts ({prompt, harmful, ...}) on-policy sampling draws from: the harmful ones when constraint
    `kind` counts only those (unsafe_choice: a harmful prompt is where a safe alternative exists), else all."""
    if kind in HARMFUL_ONLY:
        pool = [p for p in prompts if p["harmful"]]
        if pool:
            return pool
    return prompts


def on_policy_terms(kind: str, costs: torch.Tensor, harmful: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, weights) (N,) of the on-policy J_C of constraint `kind` from the cost-model scores of N sampled
    answers: the *_cost kinds average the cost itself (the seed's estimate); the rate kinds count the cost
    model's verdict c > 0 (`losses.sampled_unsafe_rate`), so J_C is the harmful-compliance rate the cost model
    sees. Weights: the prompts' harmful flags for the harmful-only kinds (1 where none is flagged), else 1."""
    flags = torch.tensor([bool(h) for h in harmful], dtype=torch.bool)
    weigh = kind in HARMFUL_ONLY and bool(flags.any())
    if kind.endswith("cost"):
        return costs, (flags.to(costs.dtype) if weigh else torch.ones_like(costs))
    return losses.sampled_unsafe_rate(costs, flags if weigh else None)


# --------------------------------------------------------------------------- what a training run holds
class RunConstraint:
    """The multipliers of one training run, the trainer's one handle on them: `single` (`LagrangeState`: the
    one λ, the step and NaN counters) and, with `constraints: per_category`, `grouped` (one λ per group).

    `args` is the run's `SafeDPOConfig`; `records` the training records (their groups make the keys);
    `other_records` (validation) only teach their prompts' groups."""

    def __init__(self, args, records: list[dict], other_records: list[dict] = ()):
        self.args = args
        self.single = LagrangeState(lam=float(args.lambda_init))
        self.grouped = None
        if args.is_safe and args.per_category:
            self.grouped = GroupedLagrangeState.from_records(
                records, by=args.constraint_groups, default_threshold=args.cost_threshold,
                thresholds=args.category_thresholds, lambda_init=args.lambda_init, reduce=args.constraint_reduce)
        self._saved: tuple | None = None
        self._prompt_groups: dict[str, set] = {}
        for rec in [*records, *other_records] if self.grouped is not None else []:  # before any lookup
            self.member_of(rec)

    @property
    def required_files(self) -> tuple[str, ...]:
        return (LAGRANGE_FILE,) + ((STATE_FILE,) if self.grouped is not None else ())

    def member_of(self, record: dict) -> list[bool] | None:
        """The record's row of the (B, K) membership, None with a single λ. A record belongs to the groups of
        its *prompt* (every record of it seen so far): a pair of two safe answers to a harmful prompt (a
        refusal and a redirect) then still counts in its category's constraint."""
        if self.grouped is None:
            return None
        own = [g for g in self.grouped.record_groups(record) if g != DEFAULT_GROUP]
        groups = self._prompt_groups.setdefault(record["prompt"], set())
        groups.update(own)
        return [k in groups for k in self.grouped.keys] if groups else [k == DEFAULT_GROUP for k in self.grouped.keys]

    def multipliers(self, member: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        """λ_b (B,) of the batch's records: 0 without a constraint, λ, or the max of the record's groups' λ."""
        if not self.args.is_safe:
            return torch.zeros(batch, device=device)
        if self.grouped is None:
            return torch.full((batch,), float(self.single.lam), device=device)
        return self.grouped.multipliers(member.to(device))

    def accumulate(self, values: torch.Tensor, weights: torch.Tensor, member: torch.Tensor | None = None) -> None:
        """Add a batch's J_C terms (`objective.constraint_terms` or the on-policy ones)."""
        if self.grouped is not None:
            self.grouped.accumulate(values, weights, member)
            return
        ok = torch.isfinite(values)
        w = torch.where(ok, weights, torch.zeros_like(weights)).double()
        total = float(w.sum())
        if total > 0:
            self.single.accumulate(float((torch.where(ok, values, torch.zeros_like(values)).double() * w).sum())
                                   / total, total)

    def step(self, device=None) -> None:
        """One optimizer step: the dual update(s) when due."""
        a = self.args
        if not a.is_safe:
            self.single.steps += 1
        elif self.grouped is None:
            self.single.step(a.lambda_lr, a.cost_threshold, a.lambda_max, a.lambda_update_steps, device)
        else:
            self.single.steps += 1
            self.grouped.step(a.lambda_lr, a.lambda_max, a.lambda_update_steps, device)

    # -- reporting
    @property
    def lam(self) -> float:
        """The single λ, or the largest group λ."""
        return max(self.grouped.lam.values()) if self.grouped is not None else self.single.lam

    @property
    def history(self) -> list:
        return self.grouped.history if self.grouped is not None else self.single.history

    def logs(self) -> dict[str, float]:
        out = {"lambda": self.lam}
        if self.grouped is not None:  # fixed key order (the groups are sorted)
            out.update({f"lambda/{k}": self.grouped.lam[k] for k in self.grouped.keys})
            out.update({f"jc/{k}": self.grouped.last_jc[k] for k in self.grouped.keys if k in self.grouped.last_jc})
        return out

    # -- checkpoints
    def gather(self, device=None) -> None:
        """Every rank: sum the accumulators over processes into the copies a checkpoint saves."""
        total, count = all_reduce_sum([self.single.jc_sum, float(self.single.jc_count)], device)
        single = LagrangeState.from_dict(self.single.to_dict())
        single.jc_sum, single.jc_count = total, count
        grouped = None
        if self.grouped is not None:
            keys = self.grouped.keys
            red = all_reduce_sum([self.grouped.sums[k] for k in keys] + [self.grouped.counts[k] for k in keys], device)
            grouped = GroupedLagrangeState.from_dict(self.grouped.to_dict())
            grouped.sums = dict(zip(keys, red[:len(keys)]))
            grouped.counts = dict(zip(keys, red[len(keys):]))
        self._saved = (single, grouped)

    def save(self, folder: str | Path) -> None:
        single, grouped = self._saved
        single.save(folder)
        if grouped is not None:
            grouped.save(folder)

    def load(self, folder: str | Path, rank: int = 0) -> None:
        """Restore the saved state (a per-category state must match the configured groups); the saved
        accumulators are the sum over ranks, so only rank 0 keeps them."""
        self.single = LagrangeState.load(folder)
        if self.grouped is not None:
            self.grouped = GroupedLagrangeState.load(folder, expect=self.grouped)
        if rank != 0:
            self.single.jc_sum, self.single.jc_count = 0.0, 0.0
            if self.grouped is not None:
                self.grouped.sums = dict.fromkeys(self.grouped.keys, 0.0)
                self.grouped.counts = dict.fromkeys(self.grouped.keys, 0.0)
