"""Reward-model losses and figures against hand-computed values; the loss assembly of RewardTrainer."""

import math

import pytest
import torch

from safealign.losses import cost_ranking_loss, cost_sign_loss, pairwise_ranking_loss, reward_centering_loss
from safealign.rm.metrics import auroc, pairwise_accuracy, reward_metrics, sign_accuracy
from safealign.rm.trainer import RewardTrainer


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def softplus(x):  # -log σ(x) = log(1 + e^{-x})
    return math.log1p(math.exp(-x))


def test_pairwise_ranking_loss_hand_values():
    got = pairwise_ranking_loss(t(1.0, 0.0), t(0.0, 2.0))
    assert got.tolist() == pytest.approx([0.313261687518, 2.126928011043], abs=1e-9)


def test_reward_centering_loss_hand_values():
    assert reward_centering_loss(t(1.0, -1.0), t(2.0, 0.5)).tolist() == pytest.approx([9.0, 0.25])


def test_cost_ranking_loss_less_safe_must_cost_more():
    got = cost_ranking_loss(t(2.0, -1.0), t(-1.0, 2.0))  # (c_less_safe, c_safer)
    assert got.tolist() == pytest.approx([softplus(3.0), softplus(-3.0)])
    assert got[0] < got[1]  # right order is cheap, wrong order is expensive


def test_cost_sign_loss_convention_positive_cost_means_unsafe():
    costs = t(1.5, 1.5, -0.5, -0.5)
    unsafe = torch.tensor([1, 0, 0, 1])
    got = cost_sign_loss(costs, unsafe).tolist()
    assert got == pytest.approx([0.201413, 1.701413, 0.474077, 0.974077], abs=1e-6)
    # c > 0 on an unsafe response and c < 0 on a safe one are the cheap cases
    assert got[0] < got[1] and got[2] < got[3]
    assert cost_sign_loss(costs, unsafe.bool()).tolist() == pytest.approx(got)


def _bare_trainer(dimension, **kw):
    tr = object.__new__(RewardTrainer)  # loss_terms needs no model: skip Trainer.__init__
    tr.dimension = dimension
    tr.sign_loss_weight = kw.get("sign_loss_weight", 1.0)
    tr.center_coeff = kw.get("center_coeff", 0.0)
    return tr


def test_helpful_loss_terms_rank_plus_centering():
    scores = t(1.0, 0.0, 0.0, 2.0)  # chosen [1, 0], rejected [0, 2]
    terms = _bare_trainer("helpful", center_coeff=0.1).loss_terms(scores, torch.full((4,), -1), 2)
    rank = (0.313261687518 + 2.126928011043) / 2
    assert terms["loss_rank"].item() == pytest.approx(rank)
    assert terms["loss_center"].item() == pytest.approx((1.0 + 4.0) / 2)
    assert terms["loss"].item() == pytest.approx(rank + 0.1 * 2.5)


def test_cost_loss_terms_rank_plus_sign_skips_unknown_labels():
    # pairs: chosen (safer) costs [-1, 0.5], rejected [2, 0.0]; one single row with cost 1.0 (unsafe)
    scores = t(-1.0, 0.5, 2.0, 0.0, 1.0)
    is_unsafe = torch.tensor([0, -1, 1, -1, 1])  # -1: label unknown -> not in the sign term
    terms = _bare_trainer("harmless", sign_loss_weight=0.5).loss_terms(scores, is_unsafe, 2)
    rank = (softplus(3.0) + softplus(-0.5)) / 2
    sign = (softplus(1.0) + softplus(2.0) + softplus(1.0)) / 3
    assert terms["loss_rank"].item() == pytest.approx(rank)
    assert terms["loss_sign"].item() == pytest.approx(sign)
    assert terms["loss"].item() == pytest.approx(rank + 0.5 * sign)


def test_metrics_hand_values():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([1.0, 1.0], [0, 1]) == pytest.approx(0.5)  # ties count half
    assert math.isnan(auroc([1.0, 2.0], [1, 1]))
    assert pairwise_accuracy([1.0, 0.0, 1.0], [0.0, 1.0, 1.0]) == pytest.approx(1 / 3)  # a tie is wrong
    assert sign_accuracy([0.5, -0.2, 0.1], [1, 0, 0]) == pytest.approx(2 / 3)
    m = reward_metrics([-1.0, 0.0], [1.0, -0.5], "harmless", [-1.0, 1.0], [0, 1])
    assert m["accuracy"] == 0.5 and m["sign_accuracy"] == 1.0 and m["auroc"] == 1.0
