"""Which prompts an evaluation asks: the harmful (safety) and benign (helpfulness) prompts of a prepared
split, a local prompt file, or a Hub dataset. One place, so safety and helpfulness read a split the same way.

A prepared split is read through the run layout (`layout.split(name)`, which honours `data.output_dir`) and
the one record reader (`data.records`); its prompts are `records.prompts_of`: distinct, in file order, each
with the union of its records' harm categories. `split` is `test` for the report and `val` for the sweep.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd

from ..data.records import prompts_of, read_preference_records
from ..errors import DataError, SafeAlignError
from ..fileio import read_jsonl
from ..layout import RunLayout


def split_prompts(layout: RunLayout, split: str, harmful: bool) -> list[dict]:
    """Distinct prompts of the prepared `split` whose records are (not) `harmful`: [{prompt, categories}]."""
    return prompts_of(read_preference_records(layout.split(split)), harmful=harmful)


def file_prompts(path: str) -> list[dict]:
    """A local .jsonl/.json/.csv/.parquet file with `prompt` (+ optional `category`)."""
    p = Path(path)
    if p.suffix == ".jsonl":
        rows = read_jsonl(p)
    else:
        readers = {".json": pd.read_json, ".csv": pd.read_csv, ".parquet": pd.read_parquet}
        if p.suffix not in readers:
            raise DataError(str(p), None, None, "unsupported file type (use .jsonl, .json, .csv or .parquet)")
        rows = readers[p.suffix](p).to_dict("records")
    return _validate_rows(rows, str(p))


def hub_prompts(dataset_id: str, split: str) -> list[dict]:
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # noqa: BLE001 - offline, unknown id, no such split: one line for the user
        raise SafeAlignError(f"eval.safety_prompts: cannot load {dataset_id!r} split {split!r} "
                             f"({str(err).splitlines()[0][:200]})") from None
    return _validate_rows(list(ds), dataset_id)


def _validate_rows(rows: list[dict], where: str) -> list[dict]:
    out = []
    for i, row in enumerate(rows, 1):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(where, i, "prompt", "missing or empty")
        cat = row.get("category")
        cats = [c for c in (cat if isinstance(cat, list) else [cat]) if isinstance(c, str) and c]
        out.append({"prompt": prompt, "categories": cats})
    if not out:
        raise DataError(where, None, None, "no prompts")
    return out


def load_safety_prompts(cfg, layout: RunLayout, split: str = "test") -> list[dict]:
    """The safety prompts `eval.safety_prompts` names (`test_split`: the harmful prompts of `split`), capped
    at `eval.max_safety_prompts`."""
    src = cfg.safety_prompts
    if src == "test_split":
        rows = split_prompts(layout, split, harmful=True)
    elif Path(src).exists():
        rows = file_prompts(src)
    else:
        rows = hub_prompts(src, cfg.safety_prompts_split)
    if not rows:
        raise SafeAlignError(f"eval.safety_prompts: {src if src != 'test_split' else layout.split(split)}: "
                             "no harmful prompts found")
    return rows[: cfg.max_safety_prompts] if cfg.max_safety_prompts else rows


def load_helpful_prompts(cfg, layout: RunLayout, split: str = "test") -> list[dict]:
    """The benign prompts of `split`, capped at `eval.max_helpful_prompts`."""
    rows = split_prompts(layout, split, harmful=False)
    if not rows:
        raise SafeAlignError(f"{layout.split(split)}: no benign prompts for helpfulness")
    return rows[: cfg.max_helpful_prompts] if cfg.max_helpful_prompts else rows
