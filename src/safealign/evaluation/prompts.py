"""Which prompts an evaluation asks: the harmful (safety) and benign (helpfulness) prompts of a prepared
split, a standard benchmark or local prompt file (read by `benchmarks.py`), or a Hub dataset. One place, so
safety, helpfulness and over-refusal read a split the same way.

A prepared split is read through the run layout (`layout.split(name)`, which honours `data.output_dir`) and
the one record reader (`data.records`); its prompts are `records.prompts_of`: distinct, in file order, each
with the union of its records' harm categories. `split` is `test` for the report and `val` for the sweep.
"""

from __future__ import annotations

from ..data.records import prompts_of, read_preference_records
from ..errors import ConfigError, DataError, SafeAlignError
from ..layout import RunLayout
from .benchmarks import is_prompt_set, load_for_eval, load_prompt_set, sample_per_benchmark


def split_prompts(layout: RunLayout, split: str, harmful: bool) -> list[dict]:
    """Distinct prompts of the prepared `split` whose records are (not) `harmful`: [{prompt, categories}]."""
    return prompts_of(read_preference_records(layout.split(split)), harmful=harmful)


def hub_prompts(dataset_id: str, split: str) -> list[dict]:
    # `datasets` only for a Hub id, as in data/loading.py: local prompt files need none (nor has the GPU image)
    import datasets

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
    elif is_prompt_set(src):  # benchmark names and local files (benchmarks.py), a seeded sample per benchmark
        return load_for_eval(cfg)
    else:
        rows = hub_prompts(src, cfg.safety_prompts_split)
    if not rows:
        raise ConfigError(f"eval.safety_prompts: {src if src != 'test_split' else layout.split(split)}: "
                             "no harmful prompts found")
    return rows[: cfg.max_safety_prompts] if cfg.max_safety_prompts else rows


def load_helpful_prompts(cfg, layout: RunLayout, split: str = "test") -> list[dict]:
    """The benign prompts of `split`, capped at `eval.max_helpful_prompts`."""
    rows = split_prompts(layout, split, harmful=False)
    if not rows:
        raise ConfigError(f"{layout.split(split)}: no benign prompts for helpfulness")
    return rows[: cfg.max_helpful_prompts] if cfg.max_helpful_prompts else rows


def load_over_refusal_prompts(cfg, layout: RunLayout, split: str = "test") -> list[dict]:
    """The benign prompts `eval.over_refusal_prompts` names (comma-separated: `alpaca-benign`, `test_split` =
    the benign prompts of `split`, local files), a seeded sample of at most `eval.max_over_refusal_prompts`
    of each; rows carry `benchmark` so the refusal rate is reported per set."""
    rows: list[dict] = []
    for part in (p.strip() for p in str(cfg.over_refusal_prompts or "").split(",")):
        if part == "test_split":
            rows += [{"prompt": r["prompt"], "category": "benign", "categories": ["benign"],
                      "benchmark": "test_split_benign"} for r in split_prompts(layout, split, harmful=False)]
        elif part:
            rows += load_prompt_set(part, cfg.safety_prompts_dir, cfg.prompt_field, cfg.category_field)
    if not rows:
        raise ConfigError(f"eval.over_refusal_prompts: no benign prompts in {cfg.over_refusal_prompts!r}")
    return sample_per_benchmark(rows, cfg.max_over_refusal_prompts, cfg.seed)
