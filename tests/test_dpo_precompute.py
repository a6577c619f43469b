"""The precompute pass: values equal direct computation; the cache is reused, and recomputed on change."""

import logging

import pytest
import torch
from helpers.dpo import random_head_rm, toy_records

from safealign.dpo.precompute import cache_info, precompute, token_budget_batches
from safealign.models.loading import load_causal_lm, load_tokenizer
from safealign.rm.scoring import load_scorer, score_pairs


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_base):
    root = tmp_path_factory.mktemp("pre")
    h = random_head_rm(tiny_base, root / "helpful_rm", 1)
    c = random_head_rm(tiny_base, root / "harmless_rm", 2)
    return root, str(h), str(c), load_tokenizer(str(tiny_base))


def test_token_budget_batches_cover_all_sorted():
    lengths = [5, 50, 7, 30, 30, 2]
    batches = token_budget_batches(lengths, 64)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) * max(lengths[i] for i in b) <= 64 or len(b) == 1 for b in batches)
    assert batches[0][0] == 1  # longest first


def test_values_cache_reuse_and_recompute(setup, tiny_base, caplog):
    root, h, c, tok = setup
    recs = toy_records(10, seed=3)
    cache = root / "cache"
    kw = dict(max_length=96, max_prompt_length=48, max_tokens_per_batch=400)
    with caplog.at_level(logging.INFO, logger="safealign.dpo.precompute"):
        rows = precompute(recs, str(tiny_base), tok, h, c, cache, **kw)
    assert "computing" in caplog.text
    assert [r["id"] for r in rows] == [r["id"] for r in recs]

    # reference log-prob of one response, computed directly (unbatched)
    from safealign.chat import encode_pair

    ref = load_causal_lm(str(tiny_base), dtype="float32").eval()
    e = encode_pair(tok, recs[4]["prompt"], recs[4]["response_1"], 96, 48)
    with torch.no_grad():
        logp = torch.log_softmax(ref(input_ids=torch.tensor([e["input_ids"]])).logits[0], -1)
    direct = sum(logp[t - 1, e["input_ids"][t]].item() for t in range(e["prompt_len"], len(e["input_ids"])))
    assert rows[4]["ref_logp_1"] == pytest.approx(direct, rel=1e-4)
    # judge scores are exactly the scoring API's
    model, stok = load_scorer(c)
    costs = score_pairs(model, stok, [recs[2]["prompt"]], [recs[2]["response_0"]], max_length=96, show_progress=False)
    assert rows[2]["cost_0"] == pytest.approx(costs[0], rel=1e-4, abs=1e-5)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="safealign.dpo.precompute"):
        again = precompute(recs, str(tiny_base), tok, h, c, cache, **kw)
    assert "reusing" in caplog.text and again == rows
    assert len(cache_info(cache, "train")) == 1

    changed = [dict(r) for r in recs]
    changed[0]["response_0"] = changed[0]["response_0"] + " Extra words."
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="safealign.dpo.precompute"):
        new = precompute(changed, str(tiny_base), tok, h, c, cache, **kw)
    assert "computing" in caplog.text and len(cache_info(cache, "train")) == 2
    assert new[0]["ref_logp_0"] != rows[0]["ref_logp_0"]
    assert new[5]["ref_logp_0"] == pytest.approx(rows[5]["ref_logp_0"], rel=1e-5)

    # a different tokenization setting or judge also invalidates the cache
    precompute(recs, str(tiny_base), tok, h, c, cache, **dict(kw, max_length=80))
    precompute(recs, str(tiny_base), tok, c, c, cache, **kw)
    assert len(cache_info(cache, "train")) == 4
