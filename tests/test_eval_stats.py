"""Wilson intervals (hand-computed) and per-category aggregation."""

import math

import pytest

from safealign.evaluation.stats import Z95, by_category, rate_block, wilson_interval


def _hand(k, n, z=Z95):
    # (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), written out independently
    p = k / n
    a = p + z * z / (2 * n)
    b = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    c = 1 + z * z / n
    return (a - b) / c, (a + b) / c


def test_wilson_matches_hand_computed_values():
    # 8/10: the textbook example (0.490, 0.943)
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    assert (lo, hi) == pytest.approx(_hand(8, 10))
    # 45/50 and 1/3
    assert wilson_interval(45, 50) == pytest.approx(_hand(45, 50))
    assert wilson_interval(1, 3) == pytest.approx((0.0615, 0.7923), abs=1e-4)


def test_wilson_edges():
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    assert rate_block(0, 0)["rate"] is None


def test_by_category_counts_each_category_and_uncategorized():
    res = by_category([True, False, True, True], [["a", "b"], ["a"], [], ("b",)])
    assert {c: (b["k"], b["n"]) for c, b in res.items()} == {"a": (1, 2), "b": (2, 2), "uncategorized": (1, 1)}
    assert res["a"]["rate"] == 0.5 and res["a"]["ci95"] == pytest.approx(list(_hand(1, 2)))
