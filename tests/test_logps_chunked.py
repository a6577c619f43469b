"""`safealign.logps.token_logps` (block-wise logit[y] - logsumexp) equals the plain float32 log-softmax + gather:
values and gradients, in float32 (1e-5) and bf16, for any block size and for non-contiguous views; it keeps no
float32 (N, T, V) tensor for backward; and `sequence_logps` built on it gives the same sums and parameter
gradients as the full-logits computation on a real tiny Llama, with and without LoRA, in float32 and bf16."""

import math

import pytest
import torch
from helpers.dpo import encoded_pairs_batch, lora_policy

from safealign.dpo.data import sequence_logps
from safealign.logps import masked_sum, reference_token_logps, token_logps


def test_hand_computed_values():
    # row 0: logits [0, ln 3] -> softmax [1/4, 3/4]; row 1: uniform over 4 -> ln(1/4)
    logits = torch.tensor([[[0.0, math.log(3.0), -math.inf, -math.inf], [1.0, 1.0, 1.0, 1.0]]])
    got = token_logps(logits, torch.tensor([[1, 2]]))
    torch.testing.assert_close(got, torch.tensor([[math.log(0.75), math.log(0.25)]]))
    s, n = masked_sum(got, torch.tensor([[1, 0]]))
    torch.testing.assert_close(s, torch.tensor([math.log(0.75)]))
    assert n.tolist() == [1.0]


@pytest.mark.parametrize("block_bytes", [1, 4 * 97 * 3, 10**9])  # one position, three positions, everything
def test_float32_values_and_gradients_equal_reference(block_bytes):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 9, 97, generator=g) * 4
    targets = torch.randint(0, 97, (3, 8), generator=g)
    upstream = torch.randn(3, 8, generator=g)
    grads = []
    for fn in (lambda x: token_logps(x, targets, block_bytes=block_bytes), lambda x: reference_token_logps(x, targets)):
        leaf = base.clone().requires_grad_(True)
        out = fn(leaf[:, 1:])  # a non-contiguous view, as `sequence_logps` passes it
        (out * upstream).sum().backward()
        grads.append((out.detach(), leaf.grad))
    (got, g_got), (want, g_want) = grads
    assert got.dtype == torch.float32 and got.shape == (3, 8)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-5)
    assert g_got[:, 0].abs().sum() == 0  # the position outside the view gets no gradient


def test_bf16_logits_accumulate_in_float32():
    g = torch.Generator().manual_seed(1)
    full = torch.randn(2, 30, 500, generator=g) * 3
    targets = torch.randint(0, 500, (2, 30), generator=g)
    leaf = full.bfloat16().requires_grad_(True)
    got = token_logps(leaf, targets, block_bytes=4 * 500 * 7)
    assert got.dtype == torch.float32
    got.sum().backward()
    ref_leaf = full.bfloat16().requires_grad_(True)
    want = reference_token_logps(ref_leaf, targets)
    want.sum().backward()
    # same bf16 inputs, both upcast before the reduction: equal up to float32 rounding
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert leaf.grad.dtype == torch.bfloat16
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, atol=1e-2, rtol=1.6e-2)
    # against float32 logits: the bf16 rounding of the inputs is the only difference (a summed sequence
    # of 30 tokens stays within bf16 tolerance, unlike a bf16 logsumexp)
    exact = reference_token_logps(full, targets)
    torch.testing.assert_close(got.sum(-1), exact.sum(-1), atol=0.15, rtol=1e-2)


def test_keeps_no_float32_vocabulary_tensor_for_backward():
    n, t, v = 4, 64, 1000
    saved = []

    def pack(x):
        saved.append((x.dtype, x.numel()))
        return x

    for fn in (token_logps, reference_token_logps):
        saved.clear()
        logits = torch.randn(n, t, v, dtype=torch.bfloat16, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            fn(logits, torch.zeros(n, t, dtype=torch.long))
        big_fp32 = [k for dtype, k in saved if dtype == torch.float32 and k >= n * t * v]
        if fn is token_logps:
            assert big_fp32 == [], saved
            assert sum(k for _, k in saved) <= n * t * v + 3 * n * t  # the bf16 logits + targets + lse
        else:  # the reference does keep one: the test would notice a regression
            assert big_fp32


def test_empty_inputs():
    logits = torch.randn(2, 0, 11, requires_grad=True)
    out = token_logps(logits, torch.zeros(2, 0, dtype=torch.long))
    assert out.shape == (2, 0)
    with pytest.raises(ValueError, match="need logits"):
        token_logps(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


# --------------------------------------------------------------------------- through the real model
PAIRS = [("How do I bake bread?", "First mix flour and water, then bake it in the oven."),
         ("Hi", "Sure."),
         ("Tell me, step by step and in detail, how yeast makes bread rise?", "It eats sugar and makes gas.")]


def _batch(tiny_base):
    return encoded_pairs_batch(tiny_base, PAIRS)


def _reference(model, ids, attn, resp):
    """`sequence_logps` as it was before safealign.logps: the same response window, a full float32 log-softmax."""
    r = resp[:, 1:]
    first = int(r.float().argmax(-1)[r.any(-1)].min())
    keep = ids.shape[1] - first
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False, logits_to_keep=keep).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, first + 1:].unsqueeze(-1)).squeeze(-1)
    mask = r[:, first:].float()
    return (logp * mask).sum(-1), mask.sum(-1)


def _grads(model, fn, ids, attn, resp, weights):
    model.zero_grad(set_to_none=True)
    logps, ntok = fn(model, ids, attn, resp)
    (logps * weights).sum().backward()
    return logps.detach(), ntok, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _compare(model, ids, attn, resp, atol, grad_atol, grad_rtol):
    weights = torch.tensor([1.0, -0.5, 2.0])  # a DPO-like signed combination of the rows
    got, n_got, g_got = _grads(model, sequence_logps, ids, attn, resp, weights)
    want, n_want, g_want = _grads(model, _reference, ids, attn, resp, weights)
    # per token within 1e-5 (the pure-function tests); a sum of ~100 nats adds float32 rounding (1 ulp ~ 1e-5)
    torch.testing.assert_close(got, want, atol=atol, rtol=1e-6)
    assert torch.equal(n_got, n_want)
    assert g_got.keys() == g_want.keys() and g_got
    for name in g_got:
        torch.testing.assert_close(g_got[name].float(), g_want[name].float(), atol=grad_atol, rtol=grad_rtol,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_sequence_logps_float32_values_and_gradients(tiny_base):
    from safealign.models.loading import load_causal_lm

    ids, attn, resp = _batch(tiny_base)
    model = load_causal_lm(str(tiny_base), dtype="float32").eval()
    _compare(model, ids, attn, resp, atol=1e-5, grad_atol=1e-6, grad_rtol=1e-4)


def test_sequence_logps_lora_values_and_gradients(tiny_base):
    ids, attn, resp = _batch(tiny_base)
    model = lora_policy(tiny_base)
    _compare(model, ids, attn, resp, atol=1e-5, grad_atol=1e-6, grad_rtol=1e-4)
    with model.disable_adapter(), torch.no_grad():  # the reference side of the online mode
        torch.testing.assert_close(sequence_logps(model, ids, attn, resp)[0], _reference(model, ids, attn, resp)[0],
                                   atol=1e-5, rtol=1e-6)


def test_sequence_logps_bf16_model(tiny_base):
    from safealign.models.loading import load_causal_lm

    ids, attn, resp = _batch(tiny_base)
    model = load_causal_lm(str(tiny_base), dtype="bfloat16").eval()
    # same bf16 forward on both sides; the log-prob step differs only by float32 rounding
    _compare(model, ids, attn, resp, atol=1e-4, grad_atol=2e-2, grad_rtol=2e-2)
    fp32 = load_causal_lm(str(tiny_base), dtype="float32").eval()
    with torch.no_grad():
        got = sequence_logps(model, ids, attn, resp)[0]
        exact = sequence_logps(fp32, ids, attn, resp)[0]
    torch.testing.assert_close(got, exact, atol=0.5, rtol=2e-2)  # bf16 forward vs float32 forward
