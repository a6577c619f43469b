"""What each `dpo.algorithm` optimises on one batch, the constraint's per-pair terms, and the metrics split by
conflict pairs (better ≠ safer: where the constraint acts) and agreeing pairs.

Tensor code between the trainer's forward pass and the pure losses of `safealign.losses`, so the trainer
stays a thin `compute_loss`. Every tensor is (B,) unless noted; `Pairs` holds one batch's values.

    algorithm     loss (per batch, + kl_coeff · KL on the chosen answers it trains on)
    dpo, mm_dpo   mean L_H                                     (helpful pairs; β fixed / dynamic)
    dpo_safe      mean L_S                                     (safety pairs, β fixed)
    safedpo       masked mean of `losses.safedpo_loss` over the pairs `safedpo_transform` keeps
    safe_dpo,     mean_b (L_H,b + λ_b L_S,b) / (1 + λ_b)       (`losses.weighted_safe_mm_dpo_loss`;
    safe_mm_dpo                                                 λ_b = λ, or the record's groups' λ)
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .. import losses

SUBSETS = ("conflict", "agree")
SPLIT_KEYS = ("loss_helpful", "loss_safety", "accuracy_helpful", "accuracy_safety", "logratio_margin_helpful",
              "logratio_margin_safety", "jc")
# Metrics over a subset of the batch's pairs, logged as Σ / count (each with its own count in the all-reduce).
COUNTED_KEYS = ("jc", "helpful_choice") + tuple(f"{k}_{s}" for s in SUBSETS for k in SPLIT_KEYS) + (
    "pairs_conflict", "pairs_agree")
INFEASIBLE_FLOOR = -1.0  # constrained_helpfulness of a checkpoint that misses the threshold is below this


def pick(choice: torch.Tensor, v0: torch.Tensor, v1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(winner, loser) values of a pair whose winning index is `choice` (B,) in {0, 1}."""
    first = choice == 0
    return torch.where(first, v0, v1), torch.where(first, v1, v0)


@dataclasses.dataclass
class Pairs:
    """One batch: policy and reference log-probs, token counts, judge scores (0 without a judge), labels.
    `unsafe_0/1`, `harmful`: 1/0, or −1 where the data does not say; `member`: (B, K) groups, or None."""

    lp0: torch.Tensor
    lp1: torch.Tensor
    ref0: torch.Tensor
    ref1: torch.Tensor
    n0: torch.Tensor
    n1: torch.Tensor
    h0: torch.Tensor
    h1: torch.Tensor
    c0: torch.Tensor
    c1: torch.Tensor
    better: torch.Tensor
    safer: torch.Tensor
    unsafe_0: torch.Tensor | None = None
    unsafe_1: torch.Tensor | None = None
    harmful: torch.Tensor | None = None
    member: torch.Tensor | None = None

    @classmethod
    def from_batch(cls, inputs: dict, pol: torch.Tensor, ntok: torch.Tensor, ref_and_scores) -> "Pairs":
        b = inputs["better"].shape[0]
        dev = pol.device
        ref0, ref1, h0, h1, c0, c1 = (t.to(dev).float() for t in ref_and_scores)
        opt = {k: inputs[k].to(dev) if k in inputs else None for k in ("unsafe_0", "unsafe_1", "harmful", "member")}
        return cls(pol[:b], pol[b:], ref0, ref1, ntok[:b], ntok[b:], h0, h1, c0, c1, inputs["better"].to(dev),
                   inputs["safer"].to(dev), **opt)

    @property
    def conflict(self) -> torch.Tensor:
        return self.better != self.safer

    def harmful_flag(self) -> torch.Tensor | None:
        """The data's harmful flag, the cost model's (max(c_0, c_1) > 0) where the data does not say."""
        if self.harmful is None:
            return None
        return torch.where(self.harmful >= 0, self.harmful > 0, torch.maximum(self.c0, self.c1) > 0)


def choice_probability(a, t: Pairs) -> torch.Tensor:
    """p_0, the probability that the policy picks y_0 over y_1 (`dpo.constraint_choice`, no gradient)."""
    if a.constraint_choice == "policy":
        return losses.policy_preference(t.lp0, t.lp1, 1.0)
    return losses.policy_preference(t.lp0 - t.ref0, t.lp1 - t.ref1, a.beta_ori)


def constraint_terms(a, t: Pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, weights) of the configured J_C (`dpo.constraint`, `dpo.constraint_choice`) for the batch."""
    if a.constraint_choice == "policy":
        x0, x1, beta = t.lp0, t.lp1, 1.0
    else:
        x0, x1, beta = t.lp0 - t.ref0, t.lp1 - t.ref1, a.beta_ori
    return losses.constraint_terms(a.constraint, x0.detach(), x1.detach(), t.c0, t.c1, beta, t.harmful_flag())


def algorithm_loss(a, t: Pairs, logit_h, logit_s, beta_h, beta_s, kl_h, kl_s,
                   lam: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"loss", "loss_helpful", "loss_safety", "loss_kl"} for `a.algorithm` (see the module docstring).
    loss_helpful / loss_safety are always the standard mean L_H, L_S of the batch (comparable across
    algorithms); `loss` is what the algorithm optimises. kl_h, kl_s: per-pair KL on each pair's chosen answer;
    lam (B,): the multiplier of each record's safety loss."""
    loss_h = -F.logsigmoid(beta_h * logit_h)
    loss_s = -F.logsigmoid(beta_s * logit_s)
    if a.algorithm == "safedpo":
        main, kl = safedpo_terms(a, t)
    elif a.algorithm == "dpo_safe":
        main, kl = loss_s.mean(), kl_s.mean()
    elif a.is_safe:
        parts = losses.weighted_safe_mm_dpo_loss(logit_h, logit_s, beta_h, beta_s, lam, 0.5 * (kl_h + kl_s),
                                                 a.kl_coeff)
        return {**parts, "loss_helpful": loss_h.mean(), "loss_safety": loss_s.mean()}
    else:
        main, kl = loss_h.mean(), kl_h.mean()
    return {"loss": main + a.kl_coeff * kl, "loss_helpful": loss_h.mean(), "loss_safety": loss_s.mean(),
            "loss_kl": kl}


def safedpo_terms(a, t: Pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """SafeDPO's loss and KL (means over the kept pairs): the helpful pair reordered by the safety labels."""
    chosen, keep, margin_on = losses.safedpo_transform(t.better, t.unsafe_0, t.unsafe_1)
    pw, pl = pick(chosen, t.lp0, t.lp1)
    rw, rl = pick(chosen, t.ref0, t.ref1)
    nw, _ = pick(chosen, t.n0, t.n1)
    per_pair = losses.safedpo_loss(pw, pl, rw, rl, margin_on, a.beta_ori, a.safedpo_delta)
    return losses.masked_mean(per_pair, keep), losses.masked_mean(losses.kl_penalty(pw, rw, nw), keep)


@torch.no_grad()
def counted_metrics(a, t: Pairs, logit_h, logit_s, beta_h, beta_s, values, weights) -> dict[str, tuple]:
    """{key: (sum, count)} over subsets of the batch (`COUNTED_KEYS`): J_C (Σ w·v, Σ w), the helpfulness of
    the policy's choice on agreeing pairs (P(pick the better answer)), and the standard pair metrics on the
    conflict and on the agreeing pairs."""
    conflict = t.conflict
    agree = ~conflict
    p0 = choice_probability(a, t)
    picks_better = torch.where(t.better == 0, p0, 1 - p0)
    per_pair = {"loss_helpful": -F.logsigmoid(beta_h * logit_h), "loss_safety": -F.logsigmoid(beta_s * logit_s),
                "accuracy_helpful": (logit_h > 0).float(), "accuracy_safety": (logit_s > 0).float(),
                "logratio_margin_helpful": logit_h, "logratio_margin_safety": logit_s}
    ok = torch.isfinite(values)
    w = torch.where(ok, weights, torch.zeros_like(weights))
    wv = torch.where(ok, values, torch.zeros_like(values)) * w
    out = {"jc": (float(wv.sum()), float(w.sum())),
           "helpful_choice": (float((picks_better * agree).sum()), float(agree.sum()))}
    for name, mask in (("conflict", conflict), ("agree", agree)):
        m = mask.float()
        for k, v in per_pair.items():
            out[f"{k}_{name}"] = (float((v * m).sum()), float(m.sum()))
        out[f"jc_{name}"] = (float((wv * m).sum()), float((w * m).sum()))
        out[f"pairs_{name}"] = (float(m.sum()), float(m.numel()))  # the share of such pairs
    return out


def constrained_helpfulness(helpful_choice: float | None, jc: float | None, threshold: float) -> float:
    """The constrained-selection metric: the helpfulness of the policy's choice when J_C ≤ threshold (a
    probability in [0, 1]); `INFEASIBLE_FLOOR` − (J_C − threshold) otherwise, so every feasible checkpoint
    ranks above every infeasible one and infeasible ones rank by how far they miss. No J_C: feasible."""
    helpful_choice = 0.0 if helpful_choice is None else helpful_choice  # no agreeing pair to measure it on
    if jc is None or jc <= threshold:
        return helpful_choice
    return INFEASIBLE_FLOOR - (jc - threshold)
