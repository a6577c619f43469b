"""Padding-free packing (dpo/packing.py): the packed layout is right (positions restart, boundaries, targets,
balanced rows), and the packed forward gives the padded path's log-probs and gradients on a real tiny Llama
under sdpa and eager attention, in one row or several, with LoRA; a token of one sequence cannot change another
packed sequence; and SafeMMDPOTrainer with dpo.padding_free gives the padded trainer's loss and gradients."""

import pytest
import torch
from helpers.dpo import encoded_pairs_batch, lora_policy, make_cfg, make_run

from safealign.dpo.data import pad_sequences, sequence_logps
from safealign.dpo.train import build_trainer
from safealign.dpo.packing import _rows, pack_batch, packed_sequence_logps


def test_pack_layout_by_hand():
    # three right-padded sequences of lengths 4, 2, 3; response tokens from index 2, 1, 1
    ids, attn, resp = pad_sequences([[10, 11, 12, 13], [20, 21], [30, 31, 32]], [2, 1, 1], pad_id=0)
    one = pack_batch(ids, attn, resp, row_capacity=None)
    assert one.input_ids.tolist() == [[10, 11, 12, 13, 20, 21, 30, 31, 32]]
    assert one.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 0, 1, 2]]
    assert one.seq_index.tolist() == [[0, 0, 0, 0, 1, 1, 2, 2, 2]]
    # position predicts the next token of its own sequence when that token is a response token
    assert one.target_mask.int().tolist() == [[0, 1, 1, 0, 1, 0, 1, 1, 0]]
    assert (one.real_tokens, one.padded_tokens) == (9, 12)

    rows = pack_batch(ids, attn, resp, row_capacity=0)  # ⌈9 / 4⌉ = 3 rows about as long as the longest (4)
    # longest first into the shortest row: 4 | 3 | 2
    assert rows.input_ids.tolist() == [[10, 11, 12, 13], [30, 31, 32, 0], [20, 21, 0, 0]]
    assert rows.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 0, 1]]  # filler: own block
    assert rows.seq_index.tolist() == [[0, 0, 0, 0], [2, 2, 2, -1], [1, 1, -1, -1]]
    assert not rows.target_mask[rows.seq_index < 0].any()


def test_balanced_rows():
    assert _rows([5, 3, 4, 2, 1], None) == [[0, 1, 2, 3, 4]]
    assert _rows([5, 3, 4, 2, 1], 0) == [[0], [2, 4], [1, 3]]  # ⌈15/5⌉ = 3 rows: 5 | 4+1 | 3+2
    assert _rows([5, 3, 4, 2, 1], 8) == [[0, 3, 4], [1, 2]]  # 2 rows: 5+2+1 | 4+3
    # ⌈34/10⌉ = 4 rows where strict bins of the longest's size would need 5; one row runs 2 over (< a sequence)
    assert _rows([10, 6, 6, 6, 6], 0) == [[0], [1, 4], [2], [3]]
    with pytest.raises(ValueError, match="right-padded"):
        pack_batch(torch.ones(1, 3, dtype=torch.long), torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 1]]))


PAIRS = [("How do I bake bread?", "First mix flour and water, then bake it in the oven."),
         ("Hi", "Sure."),
         ("Tell me, step by step and in detail, how yeast makes bread rise?", "It eats sugar and makes gas."),
         ("Is a knife sharp?", "Yes, handle it with care and keep it away from children, always.")]


def _batch(tiny_base):
    return encoded_pairs_batch(tiny_base, PAIRS)


def _run(model, fn, ids, attn, resp):
    model.zero_grad(set_to_none=True)
    logps, ntok = fn(model, ids, attn, resp)
    (logps * torch.tensor([1.0, -2.0, 0.5, 1.5])).sum().backward()
    return logps.detach(), ntok, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(model, ids, attn, resp, capacity):
    def packed(m, *a):
        return packed_sequence_logps(m, *a, row_capacity=capacity)

    want, n_want, g_want = _run(model, sequence_logps, ids, attn, resp)
    got, n_got, g_got = _run(model, packed, ids, attn, resp)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    assert torch.equal(n_got, n_want)
    assert g_got.keys() == g_want.keys() and g_got
    for name in g_want:
        torch.testing.assert_close(g_got[name], g_want[name], atol=1e-5, rtol=1e-3,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
@pytest.mark.parametrize("capacity", [None, 0, "auto"])
def test_packed_equals_padded(tiny_base, attn_impl, capacity):
    from safealign.models.loading import load_causal_lm

    ids, attn, resp = _batch(tiny_base)
    model = load_causal_lm(str(tiny_base), dtype="float32", attn_implementation=attn_impl).eval()
    assert model.config._attn_implementation == attn_impl
    _assert_same(model, ids, attn, resp, capacity)


def test_packed_equals_padded_with_lora(tiny_base):
    ids, attn, resp = _batch(tiny_base)
    model = lora_policy(tiny_base)
    _assert_same(model, ids, attn, resp, None)
    with model.disable_adapter(), torch.no_grad():
        torch.testing.assert_close(packed_sequence_logps(model, ids, attn, resp)[0],
                                   sequence_logps(model, ids, attn, resp)[0], atol=1e-4, rtol=1e-5)


def test_no_attention_across_sequence_boundaries(tiny_base):
    """Changing every token of sequence 0 leaves the packed log-probs of the sequences after it unchanged."""
    from safealign.models.loading import load_causal_lm

    ids, attn, resp = _batch(tiny_base)
    model = load_causal_lm(str(tiny_base), dtype="float32").eval()
    other = ids.clone()
    n0 = int(attn[0].sum())
    other[0, 1:n0] = (other[0, 1:n0] + 7) % model.config.vocab_size
    with torch.no_grad():
        a = packed_sequence_logps(model, ids, attn, resp, row_capacity=None)[0]
        b = packed_sequence_logps(model, other, attn, resp, row_capacity=None)[0]
    assert abs(float(a[0] - b[0])) > 1e-3  # the edit does matter to sequence 0 itself
    torch.testing.assert_close(a[1:], b[1:], atol=1e-5, rtol=1e-6)


def test_trainer_padding_free_matches_padded(tmp_path, tiny_base):
    results = {}
    for padding_free in (False, True):
        root = tmp_path / str(padding_free)
        make_run(root, tiny_base)
        trainer, _ = build_trainer(make_cfg(root, tiny_base, root, precompute=False, padding_free=padding_free))
        assert trainer.args.padding_free is padding_free
        batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
        trainer.model.train()
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        results[padding_free] = (loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                                                 if p.grad is not None})
    (loss_pad, g_pad), (loss_packed, g_packed) = results[False], results[True]
    torch.testing.assert_close(loss_packed, loss_pad, atol=1e-5, rtol=1e-4)
    assert g_pad.keys() == g_packed.keys() and g_pad
    for name in g_pad:
        torch.testing.assert_close(g_packed[name], g_pad[name], atol=1e-5, rtol=1e-3)
