"""Export the trained policy as a plain `save_pretrained` folder (transformers and vLLM load it as is)."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from ..fileio import atomic_path, write_json, write_text
from ..modelcard import write_run_card

log = logging.getLogger(__name__)


def export_policy(model, tokenizer, output_dir: str | Path, *, merge_lora: bool = False, cfg=None,
                  summary: dict | None = None, summary_md: str | None = None, data_dir=None) -> Path:
    """Write model (LoRA merged when `merge_lora`, else the adapter), tokenizer, config.yaml, the training
    summary and the model card (README.md; the report stage adds the evaluation figures later) into
    `output_dir`, all at once (a temp folder renamed into place)."""
    output_dir = Path(output_dir)
    if merge_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()  # a plain model: no peft needed to load it
    with atomic_path(output_dir) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if cfg is not None:
            # only this stage's sections: building other TrainingArguments sections here would re-run
            # accelerate's device setup inside a live process group
            write_text(tmp / "config.yaml", yaml.safe_dump(cfg.to_dict(["run", "model", "dpo"]), sort_keys=False))
        if summary is not None:
            write_json(tmp / "train_summary.json", summary)
        if summary_md is not None:
            write_text(tmp / "train_summary.md", summary_md)
        if cfg is not None:
            algo = (summary or {}).get("algorithm") or cfg.section("dpo").algorithm
            write_run_card(tmp, cfg, method=str(algo), model_name=str(algo), data_dir=data_dir)
    log.info("exported the policy to %s", output_dir)
    return output_dir
