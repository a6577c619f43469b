"""score_pairs: token-budget batching over length-sorted inputs, input order kept, read-out at the last token."""

import pytest
import torch

from safealign.errors import SafeAlignError
from safealign.models.loading import load_score_model, load_tokenizer
from safealign.rm.modeling import pad_right, sequence_scores
from safealign.rm.scoring import load_scorer, score_pairs, token_budget_batches


@pytest.fixture(scope="module")
def scorer(tiny_base):
    model, tok = load_scorer(tiny_base, device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():  # a random, non-trivial head (the fresh one is small)
        model.score.weight.normal_(0, 1.0)
    return model, tok


def _pairs(n=23):
    prompts = [("How do I bake bread " + "with flour " * (i % 5)).strip() + "?" for i in range(n)]
    responses = ["Sure, " + "mix water and yeast then bake " * ((i * 7) % 6) for i in range(n)]
    prompts[3] = [{"role": "user", "content": "A chat-message prompt about the oven?"}]
    return prompts, responses


def test_token_budget_batches_cover_all_sorted_and_within_budget():
    lengths = [5, 40, 12, 12, 3, 100, 7, 40]
    batches = token_budget_batches(lengths, 48)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 48
    assert [5] in batches  # a row longer than the budget is batched alone
    assert len(token_budget_batches(lengths, 10_000)) == 1


def test_scores_keep_input_order_under_sorting_and_batching(scorer):
    model, tok = scorer
    prompts, responses = _pairs()
    one_by_one = [score_pairs(model, tok, [p], [r], show_progress=False)[0] for p, r in zip(prompts, responses)]
    for budget in (1, 64, 200, 100_000):
        batched = score_pairs(model, tok, prompts, responses, max_tokens_per_batch=budget, show_progress=False)
        assert batched == pytest.approx(one_by_one, abs=1e-5), budget
    assert len(set(round(s, 4) for s in one_by_one)) > len(one_by_one) // 2  # the check is not vacuous
    assert not model.training and all(isinstance(s, float) for s in one_by_one)


def test_readout_is_the_last_non_padding_token(scorer):
    model, tok = scorer
    assert tok.pad_token_id != tok.eos_token_id
    seqs = [[5, 6, 7, 8, 9, tok.eos_token_id], [5, 6, tok.eos_token_id]]
    ids, mask = pad_right(seqs, tok.pad_token_id)
    with torch.no_grad():
        ours = sequence_scores(model, ids, mask)
        theirs = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)  # HF pools at the last non-pad
        alone = sequence_scores(model, torch.tensor([seqs[1]]), torch.ones(1, 3, dtype=torch.long))
    assert ours.tolist() == pytest.approx(theirs.tolist(), abs=1e-5)
    assert ours[1].item() == pytest.approx(alone.item(), abs=1e-5)


def test_save_and_reload_give_identical_scores(scorer, tmp_path):
    model, tok = scorer
    prompts, responses = _pairs(9)
    before = score_pairs(model, tok, prompts, responses, show_progress=False)
    model.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    again, tok2 = load_scorer(tmp_path / "rm", device="cpu")
    assert score_pairs(again, tok2, prompts, responses, show_progress=False) == before


def test_mismatched_inputs_are_rejected(scorer):
    model, tok = scorer
    with pytest.raises(SafeAlignError, match="2 prompts but 1 responses"):
        score_pairs(model, tok, ["a", "b"], ["x"], show_progress=False)
    assert score_pairs(model, tok, [], [], show_progress=False) == []


def test_pad_equal_to_eos_still_reads_the_eos_position(tiny_base):
    tok = load_tokenizer(str(tiny_base))
    model = load_score_model(str(tiny_base), dtype="float32", pad_token_id=tok.eos_token_id).eval()
    seqs = [[5, 6, 7, tok.eos_token_id], [5, 6, tok.eos_token_id]]
    ids, mask = pad_right(seqs, tok.eos_token_id)  # Mistral-style: pad == eos
    with torch.no_grad():
        ours = sequence_scores(model, ids, mask)
        alone = [sequence_scores(model, torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long)).item() for s in seqs]
    assert ours.tolist() == pytest.approx(alone, abs=1e-5)
