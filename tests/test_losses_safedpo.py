"""SafeDPO (Kim et al., ICLR 2026): the safety-aware reordering T and the offset loss, against hand-computed
values, and its effect on a small categorical policy trained by gradient descent."""

import math

import pytest
import torch

from safealign import losses


def _t(*v, dtype=torch.float32):
    return torch.tensor(v, dtype=dtype)


def test_transform_covers_every_case():
    # (better, unsafe_0, unsafe_1) -> (chosen, keep, h̃_l − h̃_w)
    cases = [((0, 0, 0), (0, True, 0.0)), ((0, 0, 1), (0, True, 1.0)), ((0, 1, 0), (1, True, 1.0)),
             ((0, 1, 1), (0, False, 0.0)), ((1, 0, 1), (0, True, 1.0)), ((1, 1, 0), (1, True, 1.0)),
             ((1, 0, 0), (1, True, 0.0)), ((1, 1, 1), (1, False, 0.0))]
    better = _t(*[c[0][0] for c in cases], dtype=torch.long)
    u0 = _t(*[c[0][1] for c in cases], dtype=torch.bool)
    u1 = _t(*[c[0][2] for c in cases], dtype=torch.bool)
    chosen, keep, margin_on = losses.safedpo_transform(better, u0, u1)
    assert chosen.tolist() == [c[1][0] for c in cases]
    assert keep.tolist() == [c[1][1] for c in cases]
    assert margin_on.tolist() == [c[1][2] for c in cases]
    # int {0,1} labels work like bools
    assert losses.safedpo_transform(better, u0.long(), u1.long())[0].tolist() == chosen.tolist()


def test_loss_hand_computed():
    # h = (−5 − (−6)) − (−10 − (−8)) = 3; β = 0.5 -> β h = 1.5; Δ = 2
    pc, pr, rc, rr = _t(-5.0, -5.0), _t(-10.0, -10.0), _t(-6.0, -6.0), _t(-8.0, -8.0)
    loss = losses.safedpo_loss(pc, pr, rc, rr, margin_on=_t(1.0, 0.0), beta=0.5, delta=2.0)
    assert loss[0].item() == pytest.approx(math.log1p(math.exp(0.5)))  # −log σ(1.5 − 2) = 0.97408
    assert loss[1].item() == pytest.approx(math.log1p(math.exp(-1.5)))  # plain DPO: 0.20141
    assert loss[0].item() == pytest.approx(0.9740769841801067)
    with pytest.raises(ValueError):
        losses.safedpo_loss(pc, pr, rc, rr, _t(1.0, 0.0), beta=0.5, delta=-1.0)


def test_without_offset_on_safe_pairs_it_is_dpo():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(6, generator=g) * 5 for _ in range(4))
    dpo = losses.mm_dpo_loss(pc, pr, rc, rr, 0.1)
    assert torch.allclose(losses.safedpo_loss(pc, pr, rc, rr, torch.zeros(6), 0.1, delta=10.0), dpo)
    assert torch.allclose(losses.safedpo_loss(pc, pr, rc, rr, torch.ones(6), 0.1, delta=0.0), dpo)
    # the offset only ever raises the loss (asks for a larger margin)
    assert (losses.safedpo_loss(pc, pr, rc, rr, torch.ones(6), 0.1, delta=3.0) > dpo).all()


def test_masked_mean_of_an_all_dropped_batch_is_a_zero_with_a_graph():
    x = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    assert losses.masked_mean(x, torch.tensor([True, False, True])).item() == pytest.approx(2.5)
    zero = losses.masked_mean(x, torch.zeros(3, dtype=torch.bool))
    assert zero.item() == 0.0
    zero.backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


def _train(loss_fn, steps=300):
    """A categorical policy over 3 answers to one prompt: 0 = comply (unsafe), 1 = redirect, 2 = refuse.
    Pairs (better, other): comply ≻ redirect, comply ≻ refuse (the helpful label prefers compliance),
    redirect ≻ refuse. Returns the final policy probabilities."""
    ref = torch.log_softmax(torch.zeros(3), -1)
    logits = torch.zeros(3, requires_grad=True)
    better, other = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2])
    unsafe = torch.tensor([True, False, False])
    for _ in range(steps):  # plain gradient descent, lr 0.5
        logp = torch.log_softmax(logits, -1)
        (grad,) = torch.autograd.grad(loss_fn(logp, ref, better, other, unsafe), logits)
        with torch.no_grad():
            logits -= 0.5 * grad
    return torch.softmax(logits.detach(), -1)


def test_safedpo_moves_a_policy_off_the_unsafe_answer_where_dpo_does_not():
    def dpo(logp, ref, better, other, unsafe):
        return losses.mm_dpo_loss(logp[better], logp[other], ref[better], ref[other], 1.0).mean()

    def safedpo(logp, ref, better, other, unsafe):
        # pair member 0 = better, 1 = other
        chosen, keep, margin_on = losses.safedpo_transform(torch.zeros(3, dtype=torch.long), unsafe[better],
                                                           unsafe[other])
        w = torch.where(chosen == 0, better, other)
        lo = torch.where(chosen == 0, other, better)
        return losses.masked_mean(losses.safedpo_loss(logp[w], logp[lo], ref[w], ref[lo], margin_on, 1.0, 2.0),
                                  keep)

    p_dpo, p_safe = _train(dpo), _train(safedpo)
    assert p_dpo.argmax().item() == 0  # DPO on the helpful labels: comply wins
    assert p_safe.argmax().item() == 1 and p_safe[0] < 0.05  # SafeDPO: the redirect, comply suppressed
    assert p_safe[1] > p_safe[2]  # and the redirect still beats the bare refusal (helpfulness kept)
