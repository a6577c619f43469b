"""The offline tiny-model kit: a byte-level BPE tokenizer trained locally and a small Llama/Mistral model
built from a config (random weights). Both saved with `save_pretrained`, so every stage loads them exactly
like a Hub model, by path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          PreTrainedTokenizerFast)

from ..chat import DEFAULT_CHAT_TEMPLATE
from ..fileio import atomic_path

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000):
    """Train a byte-level BPE tokenizer on `texts`; returns a `PreTrainedTokenizerFast` with a chat template."""
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.chat_template = DEFAULT_CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


def build_tiny_model(tokenizer, architecture: str = "llama", hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 4, intermediate_size: int = 192, max_position_embeddings: int = 512,
                     seed: int = 0):
    """A randomly initialised Llama- or Mistral-architecture causal LM sized for a CPU."""
    cls_cfg, cls_model = {"llama": (LlamaConfig, LlamaForCausalLM),
                          "mistral": (MistralConfig, MistralForCausalLM)}[architecture]
    config = cls_cfg(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = cls_model(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def make_tiny_base(out_dir: str | os.PathLike, texts: Iterable[str], model_cfg, seed: int = 0) -> Path:
    """Train the tokenizer on `texts`, build the model from `model_cfg` (a ModelConfig), save both to `out_dir`."""
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, vocab_size=model_cfg.tiny_vocab_size)
    model = build_tiny_model(
        tokenizer,
        architecture=model_cfg.tiny_architecture,
        hidden_size=model_cfg.tiny_hidden_size,
        num_layers=model_cfg.tiny_num_layers,
        num_heads=model_cfg.tiny_num_heads,
        intermediate_size=model_cfg.tiny_intermediate_size,
        max_position_embeddings=model_cfg.tiny_max_position_embeddings,
        seed=seed,
    )
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out_dir
