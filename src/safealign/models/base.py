"""Where the base model comes from: a Hub id / path, or the embedded tiny model built on first use.

The base is what the policy and the reward models are built on (`base_model_path`); which policy alignment
*starts* from (the base, or its SFT warm-up) is `RunLayout.policy_start`.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from ..fileio import read_jsonl
from ..layout import RunLayout
from ..toy import WORLDS, generate_world, toy_corpus
from .loading import load_tokenizer
from .tiny import make_tiny_base

log = logging.getLogger(__name__)


def base_model_path(cfg) -> str:
    """The base model: `<run>/models/base` for the embedded tiny model, else `model.name_or_path`."""
    model = cfg.section("model")
    if model.is_tiny:
        return str(RunLayout.from_config(cfg).base_model)
    return model.name_or_path


def random_base_note(cfg) -> str | None:
    """What a report must say when the base is the embedded tiny model (None otherwise): it starts from random
    weights, so its figures test the pipeline, not a language model."""
    model = cfg.section("model")
    if not model.is_tiny:
        return None
    tok = model.tokenizer_name_or_path or f"a {model.tiny_vocab_size}-token BPE trained on this run's texts"
    return (f"The base model is the embedded tiny {model.tiny_architecture} model ({model.tiny_num_layers} layers, "
            f"hidden size {model.tiny_hidden_size}; tokenizer: {tok}) with random initial weights, not a pretrained "
            "language model: it knows only what this run's stages taught it, so these figures test the pipeline, "
            "not a model's quality.")


def ensure_base_model(cfg, data_dir: str | Path | None = None) -> str:
    """Return `base_model_path(cfg)`, building the tiny model there first when it is configured and missing.

    The tiny tokenizer is `model.tokenizer_name_or_path` when set, else trained on the prepared training texts
    when they exist (`data_dir`, default the run's data folder; else on a freshly generated toy world),
    formatted with the chat template so its merges fit what the model will read.
    """
    model = cfg.section("model")
    path = Path(base_model_path(cfg))
    if not model.is_tiny or (path / "config.json").is_file():
        return str(path)
    # Stages may start together (helpful and harmless RM in two processes): one builds, the others wait,
    # so nobody reads the folder while it is being replaced.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "config.json").is_file():
            _build_tiny(cfg, path, data_dir)
    return str(path)


def _build_tiny(cfg, path: Path, data_dir) -> None:
    model = cfg.section("model")
    seed = cfg.section("run").seed
    if model.tokenizer_name_or_path:  # a given tokenizer (e.g. the real Mistral one): nothing to train
        log.info("building the tiny %s base model at %s on the tokenizer %s", model.tiny_architecture, path,
                 model.tokenizer_name_or_path)
        make_tiny_base(path, [], model, seed=seed, tokenizer=load_tokenizer(model.tokenizer_name_or_path))
        return
    train = RunLayout.from_config(cfg).with_data_dir(data_dir).split("train")
    if train.is_file():
        rows = read_jsonl(train)
    else:
        dataset = cfg.section("data").dataset
        _source, rows = generate_world(dataset if dataset in WORLDS else "toy", cfg.section("toy"))
    log.info("building the tiny %s base model at %s", model.tiny_architecture, path)
    make_tiny_base(path, toy_corpus(rows), model, seed=seed)
