"""The candidate J_C definitions (docs/constraint.md) and the per-record Safe-MM-DPO loss, against
hand-computed values; the property that motivates them: a J_C on harmful prompts does not move with the
share of benign prompts in the data, the seed's does."""

import math

import pytest
import torch

from safealign import losses


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_pair_values_hand_computed():
    # pair 0: ρ = (2, 0), β = 0.5 -> p_0 = σ(1) = 0.731059; costs (2, −1)
    # pair 1: ρ = (0, 0) -> p_0 = 0.5; costs (−3, −3)
    r0, r1 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    c0, c1 = torch.tensor([2.0, -3.0]), torch.tensor([-1.0, -3.0])
    p0 = losses.policy_preference(r0, r1, 0.5)
    assert p0.tolist() == pytest.approx([0.7310585786300049, 0.5])
    cost = losses.pair_expected_cost(r0, r1, c0, c1, 0.5)
    assert cost.tolist() == pytest.approx([1.1931757358900148, -3.0])
    assert cost.mean().item() == pytest.approx(losses.expected_cost(r0, r1, c0, c1, 0.5).item())
    unsafe = losses.pair_unsafe_probability(r0, r1, c0, c1, 0.5)
    assert unsafe.tolist() == pytest.approx([0.7162437480164855, _sig(-3)])
    assert losses.unsafe_probability_floor(c0, c1).tolist() == pytest.approx([_sig(-1), _sig(-3)])


def test_constraint_kinds_weights():
    r0, r1 = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, 1.0])
    c0, c1 = torch.tensor([2.0, -3.0, -2.0]), torch.tensor([-1.0, -3.0, -4.0])
    harmful = torch.tensor([True, False, True])
    for kind in ("cost", "unsafe_rate"):
        _, w = losses.constraint_terms(kind, r0, r1, c0, c1, 0.5, harmful)
        assert w.tolist() == [1.0, 1.0, 1.0]  # the seed's form ignores the flag
    v, w = losses.constraint_terms("harmful_unsafe_rate", r0, r1, c0, c1, 0.5, harmful)
    assert w.tolist() == [1.0, 0.0, 1.0]
    assert v.tolist() == pytest.approx(losses.pair_unsafe_probability(r0, r1, c0, c1, 0.5).tolist())
    # without a data flag the cost model flags the prompt: some answer has cost > 0
    _, w = losses.constraint_terms("harmful_cost", r0, r1, c0, c1, 0.5, None)
    assert w.tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        losses.constraint_terms("typo", r0, r1, c0, c1, 0.5)


def test_unsafe_choice_hand_computed():
    # pair 0: p_0 = σ(1); costlier = y_0 (c = 2 > −1) -> v = σ(1), w = σ(2) − σ(−1)
    # pair 1: equal costs -> w = 0 (carries no information about safety)
    # pair 2: p_0 = σ(0.5·(0 − 2)) = σ(−1); costlier = y_1 (c_1 = 1)
    #         -> v = 1 − σ(−1) = σ(1), w = σ(1) − σ(−4)
    r0, r1 = torch.tensor([2.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 2.0])
    c0, c1 = torch.tensor([2.0, -3.0, -4.0]), torch.tensor([-1.0, -3.0, 1.0])
    v, w = losses.constraint_terms("unsafe_choice", r0, r1, c0, c1, 0.5)
    assert v.tolist() == pytest.approx([_sig(1), 0.5, _sig(1)])
    assert w.tolist() == pytest.approx([_sig(2) - _sig(-1), 0.0, _sig(1) - _sig(-4)])
    # Σ v·w = Σ (expected unsafe probability − floor): the excess over the best achievable choice
    excess = (losses.pair_unsafe_probability(r0, r1, c0, c1, 0.5) - losses.unsafe_probability_floor(c0, c1))
    assert float((v * w).sum()) == pytest.approx(float(excess.sum()))


def _jc(kind, n_benign):
    """J_C at π_θ = π_ref of 10 harmful pairs (one unsafe answer, cost +3 vs −3) plus n_benign benign pairs
    (two safe answers, cost −3 each)."""
    n = 10 + n_benign
    zeros = torch.zeros(n)
    c0 = torch.tensor([3.0] * 10 + [-3.0] * n_benign)
    c1 = torch.full((n,), -3.0)
    harmful = torch.tensor([True] * 10 + [False] * n_benign)
    v, w = losses.constraint_terms(kind, zeros, zeros, c0, c1, 0.1, harmful)
    return float((v * w).sum() / w.sum())


def test_harmful_only_constraints_do_not_move_with_the_data_mix():
    for kind in ("harmful_unsafe_rate", "harmful_cost", "unsafe_choice"):
        assert _jc(kind, 0) == pytest.approx(_jc(kind, 10)) == pytest.approx(_jc(kind, 90))
    # P(unsafe | harmful) at the reference: half the mass on the unsafe answer
    assert _jc("harmful_unsafe_rate", 40) == pytest.approx(0.5 * _sig(3) + 0.5 * _sig(-3))
    assert _jc("unsafe_choice", 40) == pytest.approx(0.5)  # no flag needed: benign pairs weigh 0
    # the seed's form falls as benign prompts are added: 0 -> −1.5 -> −2.7 (the threshold must follow)
    assert _jc("cost", 0) == pytest.approx(0.0)
    assert _jc("cost", 10) == pytest.approx(-1.5)
    assert _jc("cost", 90) == pytest.approx(-2.7)


def test_weighted_loss_equals_the_scalar_form_for_equal_multipliers():
    g = torch.Generator().manual_seed(1)
    hh, hs = torch.randn(5, generator=g), torch.randn(5, generator=g)
    bh, bs = torch.rand(5, generator=g) + 0.05, torch.rand(5, generator=g) + 0.05
    kl = torch.rand(5, generator=g)
    ref = losses.safe_mm_dpo_loss(hh, hs, bh, bs, 2.0, kl, 0.1)
    got = losses.weighted_safe_mm_dpo_loss(hh, hs, bh, bs, torch.full((5,), 2.0), kl, 0.1)
    for key in ref:
        assert got[key].item() == pytest.approx(ref[key].item())


def test_weighted_loss_hand_computed():
    # two pairs with zero logits: L_H = L_S = log 2 each; λ = (0, 3): both records give log 2 -> mean log 2
    z = torch.zeros(2)
    out = losses.weighted_safe_mm_dpo_loss(z, z, torch.ones(2), torch.ones(2), torch.tensor([0.0, 3.0]))
    assert out["loss"].item() == pytest.approx(math.log(2))
    # logits: h_H = (2, 2), h_S = (−2, −2), β = 1: L_H = log(1+e^−2) = 0.126928, L_S = log(1+e^2) = 2.126928
    # λ = (0, 3): record 0 -> 0.126928, record 1 -> (0.126928 + 3·2.126928)/4 = 1.626928; mean = 0.876928
    out = losses.weighted_safe_mm_dpo_loss(torch.full((2,), 2.0), torch.full((2,), -2.0), torch.ones(2),
                                           torch.ones(2), torch.tensor([0.0, 3.0]))
    assert out["loss"].item() == pytest.approx(0.876928, abs=1e-6)
    assert out["loss_safety"].item() == pytest.approx(math.log1p(math.exp(2)))


def test_sampled_unsafe_rate():
    costs = torch.tensor([2.0, -3.0, 0.5, -0.1])
    v, w = losses.sampled_unsafe_rate(costs)
    assert v.tolist() == [1.0, 0.0, 1.0, 0.0] and w.tolist() == [1.0] * 4
    v, w = losses.sampled_unsafe_rate(costs, harmful=torch.tensor([True, True, False, False]), hard=False)
    assert v.tolist() == pytest.approx([_sig(2), _sig(-3), _sig(0.5), _sig(-0.1)])
    assert float((v * w).sum() / w.sum()) == pytest.approx((_sig(2) + _sig(-3)) / 2)
