"""Where the base policy comes from: a Hub id / path, or the embedded tiny model built on first use."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def base_model_path(cfg) -> str:
    """The base model every stage starts from (policy, reward models unless they name their own)."""
    model = cfg.section("model")
    if model.is_tiny:
        return str(cfg.section("run").directory / "models" / "base")
    return model.name_or_path


def ensure_base_model(cfg, data_dir: str | Path | None = None) -> str:
    """Return `base_model_path(cfg)`, building the tiny model there first when it is configured and missing.

    The tiny tokenizer is trained on the prepared training texts when they exist (else on a freshly
    generated toy world), formatted with the chat template so its merges fit what the model will read.
    """
    model = cfg.section("model")
    path = Path(base_model_path(cfg))
    if not model.is_tiny or (path / "config.json").is_file():
        return str(path)
    # Stages may start together (helpful and harmless RM in two processes): one builds, the others wait,
    # so nobody reads the folder while it is being replaced.
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "config.json").is_file():
            _build_tiny(cfg, path, data_dir)
    return str(path)


def _build_tiny(cfg, path: Path, data_dir) -> None:
    model = cfg.section("model")
    from ..data.toy_world import generate_toy_world, toy_corpus
    from ..fileio import read_jsonl
    from .tiny import make_tiny_base

    train = Path(data_dir or cfg.section("run").directory / "data") / "train.jsonl"
    rows = read_jsonl(train) if train.is_file() else generate_toy_world(**_toy_kwargs(cfg))
    log.info("building the tiny %s base model at %s", model.tiny_architecture, path)
    make_tiny_base(path, toy_corpus(rows), model, seed=cfg.section("run").seed)


def _toy_kwargs(cfg) -> dict:
    toy = cfg.section("toy")
    return {"num_pairs": toy.num_pairs, "seed": toy.seed}
