"""Standard safety prompt sets by name (`harmbench`, `advbench`, ...) or any local prompt file, one loader.

A safety rate means little without saying on which prompts; these are the sets papers report. Each name
maps to a file under `eval.safety_prompts_dir`, laid out like `../shared/data/real` (docs/evaluation.md):

| name | file under the folder | prompt | category |
|---|---|---|---|
| `beavertails-eval` | `beavertails/BeaverTails-Evaluation.json` | prompt | category (14) |
| `harmbench` | `safety_prompts/harmbench/harmbench_behaviors_text_test.csv` | Behavior (*) | SemanticCategory |
| `advbench` | `safety_prompts/advbench_behaviors.csv` | Behavior (or goal) | none |
| `strongreject` | `safety_prompts/strongreject_dataset.csv` | forbidden_prompt | category (6) |
| `donotanswer` | `safety_prompts/donotanswer/*.jsonl` | prompt | the file's risk area |
| `alpaca-benign` | `safety_prompts/alpaca_harmless_val.json` | instruction | `benign` (over-refusal) |

(*) HarmBench's test split without its copyright behaviours (they need HarmBench's hash-based judge); a
contextual behaviour's context comes first, as HarmBench's DirectRequest writes it: context + "\\n\\n---\\n\\n" +
behaviour.

A file is also found directly in the folder by its base name. Anything else that exists is read as a local
`.jsonl/.json/.csv/.parquet/.txt` file (a `.txt` file is one prompt a line, no category) with `prompt_field`
/ `category_field`, or the first of the usual names when they are not given. Rows come back as
`{"prompt", "category", "categories", "benchmark"}` (`categories`: the list the safety report groups by).
"""

from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ..errors import ConfigError, DataError
from .stats import by_category, rate_block

PROMPT_FIELDS = ("prompt", "forbidden_prompt", "Behavior", "goal", "instruction", "question", "text")
CATEGORY_FIELDS = ("category", "SemanticCategory", "Category", "risk_area")
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")


@dataclass(frozen=True)
class Benchmark:
    path: str  # relative to eval.safety_prompts_dir
    prompt: tuple[str, ...]
    category: str | None
    hub: str | None = None  # where the set also lives on the Hub (said in the error when no folder is set)


BENCHMARKS = {
    "beavertails-eval": Benchmark("beavertails/BeaverTails-Evaluation.json", ("prompt",), "category",
                                  hub="PKU-Alignment/BeaverTails-Evaluation"),
    "harmbench": Benchmark("safety_prompts/harmbench/harmbench_behaviors_text_test.csv", ("Behavior",),
                           "SemanticCategory"),
    "advbench": Benchmark("safety_prompts/advbench_behaviors.csv", ("Behavior", "goal"), None),
    "strongreject": Benchmark("safety_prompts/strongreject_dataset.csv", ("forbidden_prompt",), "category"),
    "donotanswer": Benchmark("safety_prompts/donotanswer", ("prompt",), None),
    "alpaca-benign": Benchmark("safety_prompts/alpaca_harmless_val.json", ("instruction",), None),
}


def is_prompt_set(spec: str) -> bool:
    """True for a benchmark name, an existing file, or a comma-separated list of them."""
    return all(p.strip() in BENCHMARKS or Path(p.strip()).expanduser().is_file() for p in str(spec).split(","))


def load_prompt_set(name_or_path: str, prompts_dir: str | None = None, prompt_field: str | None = None,
                    category_field: str | None = None) -> list[dict]:
    """The prompts of one benchmark name or local file (see the module docstring)."""
    name = name_or_path.strip()
    if name in BENCHMARKS:
        return _load_benchmark(name, prompts_dir)
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"eval.safety_prompts: {name!r} is neither a benchmark ({', '.join(BENCHMARKS)}) "
                          f"nor an existing file")
    rows = read_rows(path)
    fields = list(rows[0][1]) if rows and isinstance(rows[0][1], dict) else []
    pf = prompt_field or next((f for f in PROMPT_FIELDS if f in fields), None)
    cf = category_field or next((f for f in CATEGORY_FIELDS if f in fields), None)
    if path.suffix.lower() == ".txt":
        pf, cf = "prompt", None
    elif pf is None:
        raise DataError(str(path), None, None, f"no prompt column among {fields[:12]}; set eval.prompt_field")
    return _convert(rows, str(path), (pf,), cf, path.stem)


def _load_benchmark(name: str, prompts_dir: str | None) -> list[dict]:
    spec = BENCHMARKS[name]
    if not prompts_dir:
        hub = f" (or set eval.safety_prompts to the Hub id {spec.hub})" if spec.hub else ""
        raise ConfigError(f"eval.safety_prompts_dir: not set; benchmark {name!r} is read from "
                          f"<safety_prompts_dir>/{spec.path}{hub}. See docs/evaluation.md for the layout")
    root = Path(prompts_dir).expanduser()
    path = next((p for p in (root / spec.path, root / Path(spec.path).name) if p.exists()), None)
    if path is None:
        raise ConfigError(f"eval.safety_prompts_dir: {root}/{spec.path} not found (benchmark {name!r})")
    if path.is_dir():  # donotanswer: one file per risk area, the area is the category
        rows = []
        for f in sorted(path.glob("*.jsonl")):
            rows += _convert(read_rows(f), str(f), spec.prompt, None, name, default_category=f.stem)
        if not rows:
            raise DataError(str(path), None, None, "no .jsonl files")
        return rows
    raw = read_rows(path)
    if name == "harmbench":
        raw = [(i, _harmbench_prompt(r)) for i, r in raw if r.get("FunctionalCategory") != "copyright"]
    default = "benign" if name == "alpaca-benign" else None
    return _convert(raw, str(path), spec.prompt, spec.category, name, default_category=default)


def _harmbench_prompt(row: dict) -> dict:
    context = (row.get("ContextString") or "").strip()
    behavior = row.get("Behavior") or ""
    return {**row, "Behavior": f"{context}\n\n---\n\n{behavior}" if context else behavior}


def read_rows(path: Path) -> list[tuple[int, dict]]:
    """(row number, row) pairs: line numbers for .jsonl/.csv/.txt, 1-based positions for .json/.parquet."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(str(path), None, None, f"unsupported file type {suffix!r}; use {', '.join(SUFFIXES)}")
    try:
        if suffix == ".txt":
            lines = path.read_text(encoding="utf-8").splitlines()
            return [(i, {"prompt": ln.strip()}) for i, ln in enumerate(lines, 1) if ln.strip()]
        if suffix == ".jsonl":
            out = []
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    out.append((i, json.loads(line)))
            return out
        if suffix == ".csv":
            csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
            with open(path, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh)
                return [(reader.line_num, dict(r)) for r in reader]
        if suffix == ".parquet":
            return list(enumerate(pq.read_table(path).to_pylist(), 1))
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(str(path), err.lineno, None, f"not valid JSON ({err.msg} at column {err.colno})") from None
    except UnicodeDecodeError:
        raise DataError(str(path), None, None, "not UTF-8 text") from None
    if isinstance(data, dict):  # {"data": [...]}: the one list inside
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else None
    if not isinstance(data, list):
        raise DataError(str(path), None, None, "expected a list of rows (or an object holding one list)")
    return list(enumerate(data, 1))


def _convert(rows, where: str, prompt_fields: tuple[str, ...], category_field: str | None, benchmark: str,
             default_category: str | None = None) -> list[dict]:
    if not rows:
        raise DataError(where, None, None, "no prompts in this file")
    out = []
    for i, row in rows:
        if not isinstance(row, dict):
            raise DataError(where, i, None, f"expected an object with named fields (got {type(row).__name__})")
        field = next((f for f in prompt_fields if f in row), prompt_fields[0])
        prompt = row.get(field)
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(where, i, field, "missing or empty prompt")
        raw = row.get(category_field) if category_field else None
        cats = [c.strip() for c in (raw if isinstance(raw, list) else [raw]) if isinstance(c, str) and c.strip()]
        if not cats and isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw == raw:
            cats = [str(raw)]
        if not cats and default_category:
            cats = [default_category]
        out.append({"prompt": prompt, "category": cats[0] if cats else None, "categories": cats,
                    "benchmark": benchmark})
    return out


def sample_per_benchmark(rows: list[dict], n: int | None, seed: int = 0) -> list[dict]:
    """At most `n` rows of each benchmark, a seeded sample in file order (not the head: files are often
    sorted by category, so the head would drop whole categories)."""
    if not n:
        return rows
    keep: set[int] = set()
    for bench in dict.fromkeys(r["benchmark"] for r in rows):
        idx = [i for i, r in enumerate(rows) if r["benchmark"] == bench]
        keep.update(idx if len(idx) <= n else random.Random(f"{seed}:{bench}").sample(idx, n))
    return [r for i, r in enumerate(rows) if i in keep]


def load_for_eval(cfg) -> list[dict]:
    """`eval.safety_prompts` as one or more comma-separated names/files, capped per benchmark by a seeded
    sample of `eval.max_safety_prompts`."""
    rows: list[dict] = []
    for part in str(cfg.safety_prompts).split(","):
        rows += load_prompt_set(part, getattr(cfg, "safety_prompts_dir", None), getattr(cfg, "prompt_field", None),
                                getattr(cfg, "category_field", None))
    return sample_per_benchmark(rows, cfg.max_safety_prompts, cfg.seed)


def benchmark_summary(rows: list[dict], safe_flags: list[bool]) -> dict:
    """{"benchmarks": {name: {n, n_safe, safety_rate, ci95, categories: {cat: {rate, ci95, n, k}}}}} with
    95% Wilson intervals; {} when the rows carry no benchmark name."""
    names = list(dict.fromkeys(r.get("benchmark") for r in rows if r.get("benchmark")))
    out = {}
    for name in names:
        flags = [ok for r, ok in zip(rows, safe_flags) if r.get("benchmark") == name]
        cats = [r["categories"] for r in rows if r.get("benchmark") == name]
        block = rate_block(sum(flags), len(flags))
        out[name] = {"n": block["n"], "n_safe": block["k"], "safety_rate": block["rate"], "ci95": block["ci95"],
                     "categories": by_category(flags, cats)}
    return {"benchmarks": out} if out else {}
