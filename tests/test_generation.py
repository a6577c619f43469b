"""The generation layer on a real tiny model: order, left padding, seeding, the on-disk cache and resume."""

import json

import pytest
from helpers.prompts import MIXED_PROMPTS

from safealign.errors import SafeAlignError
from safealign.generation import generate, generate_with_stats, model_fingerprint, release

PROMPTS = MIXED_PROMPTS
KW = dict(max_new_tokens=8, show_progress=False)


def test_answers_come_back_in_input_order_whatever_the_batching(tiny_base):
    batched = generate(str(tiny_base), PROMPTS, batch_size=len(PROMPTS), **KW)
    assert len(batched) == len(PROMPTS) and all(isinstance(a, str) for a in batched)
    # The same prompts reversed form the same (length-sorted) batch: each answer must follow its prompt.
    reverse = generate(str(tiny_base), PROMPTS[::-1], batch_size=len(PROMPTS), **KW)
    assert reverse[::-1] == batched
    # One prompt at a time (no padding at all) gives the same greedy answers as left-padded batches.
    single = generate(str(tiny_base), PROMPTS, batch_size=1, **KW)
    assert single == batched


def test_cache_resumes_and_a_rerun_generates_nothing(tiny_base, tmp_path):
    cache = tmp_path / "gen.jsonl"
    # An "interrupted" run: only the first three prompts were answered before the stop.
    first, s1 = generate_with_stats(str(tiny_base), PROMPTS[:3], cache_path=cache, batch_size=2, **KW)
    assert s1.num_generated == 3 and s1.new_tokens > 0 and s1.tokens_per_second > 0
    with open(cache, "a") as fh:
        fh.write('{"key": "torn')  # killed mid-write: the torn line must be ignored
    full, s2 = generate_with_stats(str(tiny_base), PROMPTS, cache_path=cache, batch_size=2, **KW)
    assert (s2.num_cached, s2.num_generated) == (3, 2)
    assert full[:3] == first
    again, s3 = generate_with_stats(str(tiny_base), PROMPTS, cache_path=cache, batch_size=4, **KW)
    assert (s3.num_generated, s3.new_tokens) == (0, 0) and again == full
    # Other sampling parameters are other answers: not taken from the cache.
    _, s4 = generate_with_stats(str(tiny_base), PROMPTS[:1], cache_path=cache, temperature=0.9, seed=3, **KW)
    assert s4.num_generated == 1
    rows = [json.loads(l) for l in cache.read_text().splitlines() if l.strip().endswith("}")]
    assert all({"key", "output", "new_tokens"} <= set(r) for r in rows)


def test_seeded_sampling_is_reproducible_and_in_memory_models_work(tiny_base):
    from safealign.models.loading import load_causal_lm, load_tokenizer

    a = generate(str(tiny_base), PROMPTS, temperature=1.0, seed=7, batch_size=2, **KW)
    b = generate(str(tiny_base), PROMPTS, temperature=1.0, seed=7, batch_size=2, **KW)
    assert a == b
    model, tok = load_causal_lm(str(tiny_base)), load_tokenizer(str(tiny_base))
    greedy_mem = generate(model, PROMPTS, tokenizer=tok, batch_size=3, **KW)
    assert greedy_mem == generate(str(tiny_base), PROMPTS, batch_size=3, **KW)
    assert tok.padding_side == "right"  # the caller's tokenizer is left as it was
    assert model_fingerprint(model) == model_fingerprint(load_causal_lm(str(tiny_base)))
    release()


def test_bad_arguments_fail_with_one_line(tiny_base):
    with pytest.raises(SafeAlignError, match="max_new_tokens"):
        generate(str(tiny_base), ["x"], max_new_tokens=0)
    with pytest.raises(SafeAlignError, match="backend"):
        generate(str(tiny_base), ["x"], backend="tgi")
    assert generate(str(tiny_base), [], **KW) == []
