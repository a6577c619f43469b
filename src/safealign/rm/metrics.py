"""Evaluation figures of reward and cost models (pure functions on score lists)."""

from __future__ import annotations

from typing import Sequence


def pairwise_accuracy(preferred: Sequence[float], other: Sequence[float]) -> float:
    """Share of pairs where the preferred response scores strictly higher (ties count as wrong)."""
    if not preferred:
        return float("nan")
    return sum(a > b for a, b in zip(preferred, other)) / len(preferred)


def sign_accuracy(costs: Sequence[float], is_unsafe: Sequence[int]) -> float:
    """Share of responses with c > 0 exactly when unsafe (the cost model's sign convention)."""
    if not costs:
        return float("nan")
    return sum((c > 0) == bool(u) for c, u in zip(costs, is_unsafe)) / len(costs)


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve of `scores` for the positive labels (1), by the rank-sum (Mann-Whitney U)
    formula with tied scores given their average rank. NaN when only one class is present."""
    n_pos = sum(1 for y in labels if y)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1  # 1-based average rank of the tie group
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    rank_sum_pos = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def reward_metrics(chosen: Sequence[float], rejected: Sequence[float], dimension: str,
                   costs: Sequence[float] = (), is_unsafe: Sequence[int] = ()) -> dict[str, float]:
    """Figures for one evaluation pass. For the helpful RM `chosen` is the better response (higher reward
    wins); for the cost model `chosen` is the safer one (lower cost wins) and `costs`/`is_unsafe` are every
    response whose safety label is known."""
    n = len(chosen)
    if dimension == "harmless":
        acc = pairwise_accuracy([-c for c in chosen], [-c for c in rejected])
        margin = sum(r - c for c, r in zip(chosen, rejected)) / n if n else float("nan")
    else:
        acc = pairwise_accuracy(chosen, rejected)
        margin = sum(c - r for c, r in zip(chosen, rejected)) / n if n else float("nan")
    out = {"accuracy": acc, "margin": margin, "mean_score": (sum(chosen) + sum(rejected)) / (2 * n) if n else float("nan")}
    if dimension == "harmless":
        out["sign_accuracy"] = sign_accuracy(costs, is_unsafe)
        out["auroc"] = auroc(costs, is_unsafe)
        out["unsafe_share"] = sum(1 for u in is_unsafe if u) / len(is_unsafe) if is_unsafe else float("nan")
    return out
