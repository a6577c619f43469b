"""Per-category Lagrange state: grouping, per-record multipliers, the per-group dual update (hand-computed),
save/load, and a closed-loop check that each group's rate settles at its own target where one λ cannot."""

import json
import math

import pytest
import torch

from safealign.dpo.constraints import (DEFAULT_GROUP, STATE_FILE, GroupedLagrangeState, group_sums, membership,
                                       record_groups, record_multipliers)
from safealign.dpo.lagrange import LagrangeState
from safealign.errors import ConfigError

RECORDS = [
    {"harm_categories": ["Violence"], "severity": 3},
    {"harm_categories": ["Insulting Behavior", "Violence"], "severity": 2},
    {"harm_categories": [], "severity": 0},
    {"harm_categories": ["Insulting Behavior"], "severity": 1},
]


def test_record_groups():
    assert record_groups(RECORDS[1]) == ["Insulting Behavior", "Violence"]
    assert record_groups(RECORDS[2]) == [DEFAULT_GROUP]
    assert record_groups({"prompt": "no fields"}) == [DEFAULT_GROUP]
    assert record_groups(RECORDS[0], by="severity") == ["severity_3"]
    assert record_groups(RECORDS[2], by="severity") == [DEFAULT_GROUP]
    assert record_groups({"harm_categories": ["Drugs"]}, keys=["Violence", DEFAULT_GROUP]) == [DEFAULT_GROUP]
    with pytest.raises(ConfigError):
        record_groups(RECORDS[0], by="colour")


def test_from_records_thresholds_and_order():
    st = GroupedLagrangeState.from_records(RECORDS, default_threshold=0.05, thresholds={"Violence": 0.0,
                                                                                         "Drugs": 0.01})
    assert st.keys == ["Drugs", "Insulting Behavior", "Violence", DEFAULT_GROUP]
    assert st.thresholds == {"Drugs": 0.01, "Insulting Behavior": 0.05, "Violence": 0.0, DEFAULT_GROUP: 0.05}
    assert set(st.lam.values()) == {1.0}
    assert st.membership(RECORDS).tolist() == [[False, False, True, False], [False, True, True, False],
                                                [False, False, False, True], [False, True, False, False]]
    sev = GroupedLagrangeState.from_records(RECORDS, by="severity")
    assert sev.keys == ["default", "severity_1", "severity_2", "severity_3"]
    with pytest.raises(ConfigError, match="severity_1..3"):
        GroupedLagrangeState.from_records(RECORDS, by="severity", thresholds={"Violence": 0.0})
    with pytest.raises(ConfigError, match="category_thresholds.Violence"):
        GroupedLagrangeState.from_records(RECORDS, thresholds={"Violence": "zero"})
    with pytest.raises(ConfigError, match="constraint_reduce"):
        GroupedLagrangeState.from_records(RECORDS, reduce="median")


def test_record_multipliers_max_and_mean():
    member = membership([["a"], ["a", "b"], [], ["b", "c"]], ["a", "b", "c"])
    lam = torch.tensor([4.0, 0.5, 1.0])
    assert record_multipliers(member, lam, "max").tolist() == [4.0, 4.0, 0.0, 1.0]
    assert record_multipliers(member, lam, "mean").tolist() == [4.0, 2.25, 0.0, 0.75]
    # max is monotone: adding a loose tag to a strict record never lowers its weight; the mean does
    strict, both = membership([["a"]], ["a", "b", "c"]), membership([["a", "b"]], ["a", "b", "c"])
    assert record_multipliers(both, lam, "max") >= record_multipliers(strict, lam, "max")
    assert record_multipliers(both, lam, "mean") < record_multipliers(strict, lam, "mean")


def test_group_sums_hand_computed_and_nan_ignored():
    member = membership([["a"], ["a", "b"], ["b"]], ["a", "b"])
    v = torch.tensor([0.2, 0.6, float("nan")])
    w = torch.tensor([1.0, 1.0, 1.0])
    sums, counts = group_sums(v, w, member)
    assert sums.tolist() == pytest.approx([0.8, 0.6]) and counts.tolist() == [2.0, 1.0]
    sums, counts = group_sums(torch.tensor([0.2, 0.6, 0.9]), torch.tensor([1.0, 0.0, 1.0]), member)
    assert sums.tolist() == pytest.approx([0.2, 0.9]) and counts.tolist() == [1.0, 1.0]


def test_dual_update_per_group_hand_computed():
    st = GroupedLagrangeState(keys=["a", "b", "c"], thresholds={"a": 0.05, "b": 0.5, "c": 0.1},
                              lam={"a": 1.0, "b": 0.1, "c": 2.0})
    member = membership([["a"], ["a", "b"], ["b"]], st.keys)
    st.accumulate(torch.tensor([0.1, 0.3, 0.1]), torch.ones(3), member)
    assert st.step(lr=1.0, lambda_max=None, every=2) is False  # not due: accumulators kept
    st.accumulate(torch.tensor([0.2, 0.2, 0.0]), torch.ones(3), member)
    assert st.step(lr=1.0, lambda_max=None, every=2) is True
    # J_a = (0.1 + 0.3 + 0.2 + 0.2) / 4 = 0.2 -> λ_a = 1 + (0.2 − 0.05) = 1.15
    # J_b = (0.3 + 0.1 + 0.2 + 0.0) / 4 = 0.15 -> λ_b = max(0, 0.1 + (0.15 − 0.5)) = 0
    # c saw no record: λ_c stays 2.0
    assert st.lam == pytest.approx({"a": 1.15, "b": 0.0, "c": 2.0})
    assert st.last_jc == pytest.approx({"a": 0.2, "b": 0.15})
    assert st.history[-1][0] == 2 and set(st.history[-1][2]) == {"a", "b"}
    assert st.sums == {"a": 0.0, "b": 0.0, "c": 0.0}
    st.accumulate(torch.tensor([1.0]), torch.ones(1), membership([["a"]], st.keys))
    st.step(lr=10.0, lambda_max=3.0, every=1)
    assert st.lam["a"] == 3.0  # clipped


def test_one_group_reproduces_the_single_multiplier():
    g = torch.Generator().manual_seed(0)
    single = LagrangeState(lam=1.0)
    grouped = GroupedLagrangeState(keys=[DEFAULT_GROUP], thresholds={DEFAULT_GROUP: 0.3},
                                   lam={DEFAULT_GROUP: 1.0})
    member = torch.ones((8, 1), dtype=torch.bool)
    for _ in range(12):
        v = torch.rand(8, generator=g)
        single.accumulate(float(v.mean()))
        grouped.accumulate(v, torch.ones(8), member)
        single.step(0.5, 0.3, None, every=3)
        grouped.step(0.5, None, every=3)
        assert grouped.lam[DEFAULT_GROUP] == pytest.approx(single.lam, abs=1e-6)  # float32 batch means


def test_save_load_roundtrip_and_config_mismatch(tmp_path):
    st = GroupedLagrangeState.from_records(RECORDS, thresholds={"Violence": 0.0})
    st.accumulate(torch.tensor([0.4]), torch.ones(1), st.membership(RECORDS[:1]))
    st.step(0.1, None, every=1)
    st.accumulate(torch.tensor([0.2]), torch.ones(1), st.membership(RECORDS[:1]))  # pending at save time
    st.save(tmp_path)
    assert json.loads((tmp_path / STATE_FILE).read_text())["lam"]["Violence"] == pytest.approx(1.04)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file
    back = GroupedLagrangeState.load(tmp_path, expect=GroupedLagrangeState.from_records(
        RECORDS, thresholds={"Violence": 0.0}))
    assert back == st
    with pytest.raises(ConfigError, match="thresholds differ"):
        GroupedLagrangeState.load(tmp_path, expect=GroupedLagrangeState.from_records(RECORDS))
    with pytest.raises(ConfigError, match="keys differ"):
        GroupedLagrangeState.load(tmp_path, expect=GroupedLagrangeState.from_records(
            RECORDS[:1], thresholds={"Violence": 0.0}))


def _closed_loop(per_group: bool, steps=3000):
    """Two categories whose unsafe rate falls with their λ at different speeds, r_k(λ) = r0_k·exp(−s_k·λ),
    with targets d = (0.01, 0.2). Per group, each λ_k settles where r_k = d_k; one shared λ (pooled rate,
    pooled target = the rate-weighted mean of the targets) cannot hold both."""
    keys = ["hard", "loose"]
    r0, sens, share = torch.tensor([0.5, 0.5]), torch.tensor([0.5, 4.0]), torch.tensor([0.3, 0.7])
    targets = {"hard": 0.01, "loose": 0.2}
    if per_group:
        st = GroupedLagrangeState(keys=keys, thresholds=targets, lam={"hard": 1.0, "loose": 1.0})
    else:
        pooled = float((share * torch.tensor([0.01, 0.2])).sum())
        st = GroupedLagrangeState(keys=["all"], thresholds={"all": pooled}, lam={"all": 1.0})
    member = membership([["hard"], ["loose"]], keys) if per_group else torch.ones((2, 1), dtype=torch.bool)
    for _ in range(steps):
        lam_b = st.multipliers(member) if per_group else st.lambdas().expand(2)
        rates = r0 * torch.exp(-sens * lam_b)
        st.accumulate(rates, share, member)  # weights = each category's share of the harmful prompts
        st.step(lr=2.0, lambda_max=50.0, every=1)
    lam_b = st.multipliers(member) if per_group else st.lambdas().expand(2)
    return (r0 * torch.exp(-sens * lam_b)).tolist()


def test_per_group_holds_each_rate_at_its_target_where_one_lambda_does_not():
    hard, loose = _closed_loop(per_group=True)
    assert hard == pytest.approx(0.01, rel=0.05) and loose == pytest.approx(0.2, rel=0.05)
    hard1, loose1 = _closed_loop(per_group=False)
    assert hard1 > 0.05  # the rare strict category stays 5x+ above its target
    assert loose1 < 0.1  # while the loose one is pushed far below its own
    assert math.isclose(0.3 * hard1 + 0.7 * loose1, 0.3 * 0.01 + 0.7 * 0.2, rel_tol=0.05)
