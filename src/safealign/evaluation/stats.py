"""Rates with 95% Wilson score intervals, overall and per category."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when n == 0 (nothing is known).

    Unlike the normal approximation it stays inside [0, 1] and behaves at rates of 0 or 1, which a small
    safety eval hits often.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n (got {successes}, {n})")
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, center - half)  # exact bounds at 0 and 1 (no rounding noise)
    hi = 1.0 if successes == n else min(1.0, center + half)
    return lo, hi


def rate_block(successes: int, n: int) -> dict:
    lo, hi = wilson_interval(successes, n)
    return {"rate": successes / n if n else None, "ci95": [lo, hi], "n": n, "k": successes}


def by_category(flags: Iterable[bool], categories: Iterable[Iterable[str]]) -> dict[str, dict]:
    """Rate per category; an item with several categories counts once in each, one with none in 'uncategorized'."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for ok, cats in zip(flags, categories):
        for c in (list(cats) or ["uncategorized"]):
            counts[c][0] += int(bool(ok))
            counts[c][1] += 1
    return {c: rate_block(k, n) for c, (k, n) in sorted(counts.items())}
