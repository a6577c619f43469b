"""The offline tiny-model kit: BPE tokenizer trained with `tokenizers`, tiny Llama/Mistral saved and reloaded
offline through safealign.models.loading, chat encoding boundaries, and the base model built once."""

import os

import pytest
import torch

from safealign.chat import encode_pair, encode_prompt, prompt_text
from safealign.toy import generate_toy_world, toy_corpus
from safealign.models.config import ModelConfig
from safealign.models.loading import load_causal_lm, load_tokenizer
from safealign.models.tiny import build_tiny_model, make_tiny_base, train_tokenizer


@pytest.fixture(scope="module")
def corpus():
    return toy_corpus(generate_toy_world(num_pairs=300, seed=0))


def test_offline_environment():
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_tokenizer_special_tokens_and_round_trip(corpus):
    tok = train_tokenizer(corpus, vocab_size=500)
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    text = "How can I bake bread? Sure! To bake bread, knead the dough."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert len(tok(text)["input_ids"]) < len(text) / 2  # merges learned from the toy world


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_save_reload_offline_same_logits(tmp_path, corpus, arch):
    cfg = ModelConfig(tiny_architecture=arch, tiny_vocab_size=400, tiny_hidden_size=32, tiny_num_heads=2,
                      tiny_intermediate_size=64)
    out = make_tiny_base(tmp_path / arch, corpus[:200], cfg, seed=1)
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    tok = load_tokenizer(str(out))
    model = load_causal_lm(str(out), dtype="float32").eval()
    assert model.config.model_type == arch and model.config.num_hidden_layers == 2
    ids = torch.tensor([encode_pair(tok, "How can I make tea?", "Sure! Steep the leaves.")["input_ids"]])
    rebuilt = build_tiny_model(train_tokenizer(corpus[:200], vocab_size=400), arch, hidden_size=32, num_layers=2,
                               num_heads=2, intermediate_size=64, seed=1).eval()
    with torch.no_grad():
        a, b = model(ids).logits, rebuilt(ids).logits
    assert torch.allclose(a, b, atol=1e-6)  # same weights after save -> reload (same seed, same tokenizer)
    reloaded_again = load_causal_lm(str(out), dtype="float32").eval()
    with torch.no_grad():
        assert torch.equal(reloaded_again(ids).logits, a)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True) == "<s>BEGINNING OF CONVERSATION: USER: hi ASSISTANT:"


def test_encode_pair_boundary(tiny_base):
    tok = load_tokenizer(str(tiny_base))
    prompt, response = "How can I fix a bike tire?", "Sure! To fix a bike tire, patch the hole in the tube."
    enc = encode_pair(tok, prompt, response, max_length=512)
    ids, n = enc["input_ids"], enc["prompt_len"]
    assert ids[:n] == encode_prompt(tok, prompt)
    assert tok.decode(ids[:n]) == prompt_text(tok, prompt) == f"<s>BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:"
    assert tok.decode(ids[n:]) == " " + response + "</s>" and ids[-1] == tok.eos_token_id
    # the response tokens are exactly those of the response text: no token straddles the boundary
    assert ids[n:-1] == tok(" " + response, add_special_tokens=False)["input_ids"]
    short = encode_pair(tok, prompt, response, max_length=n + 5, max_prompt_length=n)
    assert len(short["input_ids"]) == n + 5 and short["prompt_len"] == n
    cut = encode_pair(tok, "word " * 100 + prompt, response, max_length=64, max_prompt_length=20)
    assert cut["prompt_len"] == 20 and tok.decode(cut["input_ids"][:20]).endswith(f"{prompt} ASSISTANT:")


def test_ensure_base_model_builds_once(tmp_path):
    from safealign.config import load_config
    from safealign.models.base import base_model_path, ensure_base_model

    cfg = load_config(None, [f"run.run_dir={tmp_path / 'run'}", "toy.num_pairs=200", "model.tiny_vocab_size=300",
                             "model.tiny_hidden_size=32", "model.tiny_num_heads=2"])
    path = ensure_base_model(cfg)
    assert path == base_model_path(cfg) == str(tmp_path / "run" / "models" / "base")
    weights = os.path.join(path, "model.safetensors")
    stamp = os.stat(weights).st_mtime_ns
    assert ensure_base_model(cfg) == path and os.stat(weights).st_mtime_ns == stamp  # not rebuilt
    model = load_causal_lm(path, dtype="float32")
    assert model.config.hidden_size == 32
    cfg = load_config(None, ["model.name_or_path=some/hub-model"])
    assert ensure_base_model(cfg) == "some/hub-model"  # nothing built for a real model
