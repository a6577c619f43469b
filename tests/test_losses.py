"""Every function of safealign.losses against values computed by hand (math module, not torch)."""

import math

import pytest
import torch

from safealign import losses


def softplus_neg(x: float) -> float:
    """−log σ(x) = log(1 + e^{−x})."""
    return math.log1p(math.exp(-x))


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_pairwise_ranking_and_centering():
    out = losses.pairwise_ranking_loss(t(1.0, 0.0), t(0.0, 2.0))
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx([0.31326168751822286, 2.1269280110429727])
    assert losses.reward_centering_loss(t(1.0, -3.0), t(2.0, 3.0)).tolist() == [9.0, 0.0]


def test_cost_losses():
    assert losses.cost_ranking_loss(t(2.0), t(0.0)).item() == pytest.approx(0.12692801104297252)
    # s = +1 for an unsafe response, −1 for a safe one: −log σ(s·c)
    out = losses.cost_sign_loss(t(1.0, 1.0, -2.0), torch.tensor([1, 0, 0]))
    assert out.tolist() == pytest.approx([softplus_neg(1.0), softplus_neg(-1.0), softplus_neg(2.0)])
    out_bool = losses.cost_sign_loss(t(1.0), torch.tensor([True]))
    assert out_bool.item() == pytest.approx(softplus_neg(1.0))


def test_dynamic_beta_values_and_clamp():
    ln2 = math.log(2.0)
    delta = t(0.0, 2 * ln2, -2 * ln2, 1e6, -100.0)
    beta = losses.dynamic_beta(delta, beta_ori=0.1, w=0.5, k=0.5, beta_min=1e-3)
    # δ=0 -> β_ori; exp(−kδ)=1/2 -> β_ori(1+w/2); exp(−kδ)=2 -> β_ori(1−w); δ→∞ -> β_ori(1+w); δ≪0 -> beta_min
    assert beta.tolist() == pytest.approx([0.1, 0.125, 0.05, 0.15, 1e-3])
    assert (beta > 0).all()
    assert losses.dynamic_beta(t(5.0, -5.0), 0.1, 0.0, 0.5).tolist() == pytest.approx([0.1, 0.1])  # w=0: fixed β
    with pytest.raises(ValueError):
        losses.dynamic_beta(t(0.0), 0.1, 0.5, 0.5, beta_min=0.0)


def test_dpo_logits_and_mm_dpo_loss():
    h = losses.dpo_logits(t(-1.0), t(-3.0), t(-2.0), t(-2.5))
    assert h.item() == pytest.approx(1.5)  # (−1+2) − (−3+2.5)
    per_pair = losses.mm_dpo_loss(t(-1.0, -1.0), t(-3.0, -3.0), t(-2.0, -2.0), t(-2.5, -2.5), t(2.0, 0.5))
    assert per_pair.shape == (2,)
    assert per_pair.tolist() == pytest.approx([softplus_neg(3.0), softplus_neg(0.75)])
    plain = losses.mm_dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.5), 0.1)  # float β: standard DPO
    assert plain.item() == pytest.approx(softplus_neg(0.15))
    assert losses.mm_dpo_loss(t(-1.0), t(-3.0), t(-1.0), t(-3.0), 0.1).item() == pytest.approx(math.log(2.0))


def test_kl_penalty():
    # r = (−2 − (−4)) / 2 = 1 -> e − 2 ; equal log-probs -> 0 ; zero tokens counts as one
    out = losses.kl_penalty(t(-4.0, -2.0, -1.0), t(-2.0, -2.0, -1.5), torch.tensor([2, 5, 0]))
    assert out.tolist() == pytest.approx([math.e - 2.0, 0.0, math.exp(-0.5) - 1.0 + 0.5])
    assert (losses.kl_penalty(t(-1.0, -9.0), t(-5.0, -2.0), torch.tensor([3, 3])) >= 0).all()


def test_safe_mm_dpo_loss_values():
    out = losses.safe_mm_dpo_loss(t(1.0, 3.0), t(2.0, -1.0), t(1.0, 0.5), t(1.0, 2.0), lam=3.0, kl=t(0.2, 0.4),
                                  kl_coeff=0.5)
    lh = (softplus_neg(1.0) + softplus_neg(1.5)) / 2
    ls = (softplus_neg(2.0) + softplus_neg(-2.0)) / 2
    assert out["loss_helpful"].item() == pytest.approx(lh)
    assert out["loss_safety"].item() == pytest.approx(ls)
    assert out["loss_kl"].item() == pytest.approx(0.3)
    assert out["loss"].item() == pytest.approx((lh + 3.0 * ls) / 4.0 + 0.5 * 0.3)
    no_kl = losses.safe_mm_dpo_loss(t(1.0), t(2.0), t(1.0), t(1.0), lam=0.0)
    assert no_kl["loss"].item() == pytest.approx(softplus_neg(1.0))  # λ=0: helpful DPO only
    assert no_kl["loss_kl"].item() == 0.0


@pytest.mark.parametrize("lam", [0.0, 0.5, 2.0])
def test_reduction_to_lambda_weighted_dpo(lam):
    """w = 0, kl_coeff = 0, fixed λ: (DPO_H + λ·DPO_S)/(1+λ) with standard sigmoid DPO at β_ori."""
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(6, generator=g, dtype=torch.float64) * 5 for _ in range(4))
    qc, qr, sc, sr = (torch.randn(6, generator=g, dtype=torch.float64) * 5 for _ in range(4))
    delta_h, delta_s = torch.randn(6, generator=g) * 3, torch.randn(6, generator=g) * 3
    beta_h = losses.dynamic_beta(delta_h.double(), 0.1, 0.0, 0.5)
    beta_s = losses.dynamic_beta(delta_s.double(), 0.1, 0.0, 0.5)
    out = losses.safe_mm_dpo_loss(losses.dpo_logits(pc, pr, rc, rr), losses.dpo_logits(qc, qr, sc, sr),
                                  beta_h, beta_s, lam=lam, kl=t(*[1.0] * 6), kl_coeff=0.0)
    dpo_h = sum(softplus_neg(0.1 * ((a - c) - (b - d))) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())) / 6
    dpo_s = sum(softplus_neg(0.1 * ((a - c) - (b - d))) for a, b, c, d in zip(qc.tolist(), qr.tolist(), sc.tolist(), sr.tolist())) / 6
    assert out["loss"].item() == pytest.approx((dpo_h + lam * dpo_s) / (1 + lam), rel=1e-12)


def test_expected_cost():
    # equal log-ratios: p_0 = 1/2 -> mean cost of the two responses
    assert losses.expected_cost(t(0.3), t(0.3), t(4.0), t(0.0), 0.1).item() == pytest.approx(2.0)
    # β(ρ_0 − ρ_1) = ln 3 -> p_0 = 3/4 -> 0.75·4 + 0.25·0
    rho0 = math.log(3.0) / 0.1
    out = losses.expected_cost(t(rho0, 0.0), t(0.0, 0.0), t(4.0, 1.0), t(0.0, 3.0), 0.1)
    assert out.item() == pytest.approx((3.0 + 2.0) / 2)
    x = torch.tensor([1.0], requires_grad=True)
    assert not losses.expected_cost(x, x * 0, t(1.0).float(), t(0.0).float(), 0.1).requires_grad


def test_lagrange_update():
    assert losses.lagrange_update(1.0, 2.0, 0.5) == pytest.approx(2.0)
    assert losses.lagrange_update(1.0, 2.0, 0.5, threshold=1.0) == pytest.approx(1.5)
    assert losses.lagrange_update(1.0, 3.0, 0.5, threshold=1.0) == pytest.approx(2.0)
    assert losses.lagrange_update(0.1, -1.0, 1.0) == 0.0  # projected onto λ ≥ 0
    assert losses.lagrange_update(1.0, 10.0, 1.0, lambda_max=1.5) == 1.5
