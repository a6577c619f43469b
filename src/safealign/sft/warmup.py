"""The SFT warm-up stage (`safealign sft`, pipeline stage `sft`): the base policy learns the more helpful
answer of every training record before alignment.

In the toy world the more helpful answer to a harmful prompt is usually the unsafe one, so the warmed-up
base is *less* safe: alignment has to fix that, which is the point of the demo. With `sft.enabled` the
layout's base-policy rule makes this model the start of DPO and the report's `base`.
"""

from __future__ import annotations

from pathlib import Path

from ..data.records import read_preference_records
from ..layout import RunLayout
from ..logs import say
from ..models.base import ensure_base_model
from .data import chosen_examples
from .train import run_sft

MAX_VAL_EXAMPLES = 512  # the validation loss is a progress signal, not a benchmark: a bounded set suffices


def run_sft_warmup(cfg, output_dir: str | Path | None = None, resume: str | bool | None = None) -> dict:
    """Warm the base policy up on the chosen (= more helpful) answers of the run's `train` split; the model
    goes to `output_dir` (default: the layout's `models/sft`)."""
    layout = RunLayout.from_config(cfg)
    sft = cfg.section("sft")
    train = chosen_examples(read_preference_records(layout.split("train")))
    val_file = layout.split("val")
    val = chosen_examples(read_preference_records(val_file)) if val_file.is_file() else []
    if sft.max_train_examples:
        train = train[: sft.max_train_examples]
    # The stage's own seed, not run.seed (see SFTStageConfig).
    args, callbacks = sft.fit_to_run(layout, "sft", cfg, seed=sft.seed)
    args.check_steps(len(train), args.world_size, key="sft.num_train_epochs")  # before the base is built
    base = ensure_base_model(cfg)
    # The report calls the warm-up `base` when alignment starts from it (the layout's rule).
    card = {"method": "sft", "model_name": "base" if layout.start == "sft" else "sft", "data_dir": layout.data_dir}
    return run_sft(train, val[:MAX_VAL_EXAMPLES], base, output_dir or layout.sft_model, args,
                   model_cfg=cfg.section("model"), resume=resume, callbacks=callbacks, config_to_save=cfg,
                   steps_key="sft.num_train_epochs", card=card)


def cli_main(cfg, args) -> int:
    """`safealign sft`: the warm-up on its own."""
    metrics = run_sft_warmup(cfg, output_dir=getattr(args, "output", None), resume=getattr(args, "resume", None))
    say(f"sft: val loss {metrics.get('initial_val_loss')} -> {metrics.get('val_loss')}")
    return 0
