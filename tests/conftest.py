"""Shared fixtures. Everything is offline: HF_HUB_OFFLINE=1, tiny models built from a config."""

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402

from safealign.models.config import ModelConfig  # noqa: E402
from safealign.models.tiny import make_tiny_base  # noqa: E402
from safealign.toy import generate_toy_world, toy_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_MT_BENCH = REPO.parent / "shared" / "data" / "mt_bench"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)  # 2-core machine; tests run predictably and leave a core free


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer Llama with a tokenizer trained on varied text, saved with save_pretrained."""
    texts = toy_corpus(generate_toy_world(num_pairs=400, seed=0))
    out = tmp_path_factory.mktemp("tiny") / "base"
    make_tiny_base(out, texts, ModelConfig(tiny_vocab_size=600))
    return out


@pytest.fixture(scope="session")
def shared_mt_bench() -> Path:
    if not (SHARED_MT_BENCH / "question.jsonl").is_file():
        pytest.skip("../shared/data/mt_bench is absent")
    return SHARED_MT_BENCH
