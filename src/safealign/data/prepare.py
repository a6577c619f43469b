"""The data stage, `safealign prepare`: load -> convert to canonical records -> clean -> split by prompt ->
write train/val/test.jsonl (+ safety_*.jsonl for BeaverTails rows), stats.json, stats.md, config.yaml.

Everything is written into a temporary sibling folder that is renamed onto the output folder at the end, so a
failed run leaves nothing that looks complete. See docs/data.md.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from ..config import asdict_shallow, redact
from ..errors import ConfigError, DataError
from ..fileio import atomic_path
from ..layout import RunLayout
from ..logs import say
from . import stats as S
from .loading import open_sources
from .schemas import DEFECTS, Drop, RowError, closest_schema, detect_schema, missing_columns, to_record

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MAX_LISTED_ERRORS = 20
PROGRESS_MIN_ROWS = 20_000  # smaller inputs finish before a bar is worth drawing


def run_prepare(data_cfg, toy_cfg, output_dir, seed: int | None = None) -> dict:
    """Prepare `data_cfg.dataset` into `output_dir`; returns the summary (stats.json without the samples)."""
    start = time.time()
    seed = data_cfg.seed if seed is None else seed
    out = Path(output_dir)
    _check_output(out)
    sources = open_sources(data_cfg.dataset, split=data_cfg.split, revision=data_cfg.revision,
                           subset=data_cfg.subset, toy=toy_cfg)
    prefs, safety, drops, errors, schemas, rows_read = _read_all(sources, data_cfg)
    _propagate_harmful_prompts(prefs, safety)
    assignment = _split_prompts({r["prompt"] for r in prefs} | {r["prompt"] for r in safety}, data_cfg, seed)
    split_prefs = {s: [r for r in prefs if assignment[r["prompt"]] == s] for s in SPLITS}
    split_safety = {s: [r for r in safety if assignment[r["prompt"]] == s] for s in SPLITS}
    if not prefs and not safety:
        raise DataError(data_cfg.dataset, None, None, "no usable rows left (dropped: "
                        + (", ".join(f"{k} {v}" for k, v in drops.most_common()) or "none") + ")")

    stats = {
        "dataset": data_cfg.dataset,
        "schemas": dict(schemas),
        "rows_read": rows_read,
        "rows_kept": len(prefs) + len(safety),
        "rows_dropped": sum(drops.values()),
        # kept records per `source` (the file, Hub id or toy-world): real and generated rows stay told apart
        "sources": dict(Counter(r["source"] for r in prefs + safety).most_common()),
        "dropped": dict(drops.most_common()),
        "errors": errors,
        "split": {"seed": seed, "by": "prompt",
                  "fractions": [data_cfg.train_fraction, data_cfg.val_fraction, data_cfg.test_fraction],
                  "prompts": dict(Counter(assignment.values()))},
        "splits": {s: {"preference": S.preference_stats(split_prefs[s]), "safety": S.safety_stats(split_safety[s])}
                   for s in SPLITS},
        "all": {"preference": S.preference_stats(prefs), "safety": S.safety_stats(safety)},
        "samples": S.sample(prefs or safety, data_cfg.show, seed),
    }
    resolved = {"data": redact(asdict_shallow(data_cfg)), "toy": redact(asdict_shallow(toy_cfg))}
    resolved["data"]["output_dir"] = str(out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        for s in SPLITS:
            _write_jsonl(tmp / f"{s}.jsonl", split_prefs[s])
            if safety:
                _write_jsonl(tmp / f"safety_{s}.jsonl", split_safety[s])
        stats["seconds"] = round(time.time() - start, 2)
        (tmp / "stats.md").write_text(S.render_markdown(stats), encoding="utf-8")
        (tmp / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {k: v for k, v in stats.items() if k != "samples"}
    summary["output_dir"] = str(out)
    summary["samples"] = stats["samples"]
    return summary


def _check_output(out: Path) -> None:
    """The output folder is replaced as a whole: refuse to replace anything that is not a prepared-data folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --output")
    if out.is_dir() and any(out.iterdir()) and not (out / "stats.json").is_file():
        raise ConfigError(f"{out}: folder exists, is not empty and holds no prepared data (no stats.json); "
                             f"choose another --output")


def _read_all(sources, cfg):
    prefs, safety = [], []
    seen: set = set()
    drops: Counter = Counter()
    errors: list[str] = []
    schemas: Counter = Counter()
    rows_read = 0
    total = sum(s.total or 0 for s in sources)
    bar = tqdm(total=total or None, unit="rows", desc="prepare", disable=total < PROGRESS_MIN_ROWS)
    for src in sources:
        schema = _schema_for(src, cfg.schema)
        for row_no, row in src.rows:
            rows_read += 1
            bar.update()
            try:
                if isinstance(row, RowError):
                    raise row
                rec = to_record(row, schema, src.name, loose=src.loose)
                _length_filter(rec, cfg)
                key = ((rec["prompt"], *sorted((rec["response_0"], rec["response_1"])))
                       if "response_0" in rec else (rec["prompt"], rec["response"]))
                if key in seen:  # exact duplicate (a pair with its responses swapped counts as the same pair)
                    raise Drop("duplicate")
                seen.add(key)
            except RowError as err:
                error = DataError(src.label, row_no, err.field, err.problem)
                if cfg.on_error == "raise":
                    bar.close()
                    raise error from None
                drops["malformed"] += 1
                if len(errors) < MAX_LISTED_ERRORS:
                    errors.append(str(error))
                continue
            except Drop as drop:
                if drop.reason in DEFECTS:  # a defect of the input: on_error decides, like a malformed row
                    error = DataError(src.label, row_no, drop.field, drop.problem)
                    if cfg.on_error == "raise":
                        bar.close()
                        raise DataError(src.label, row_no, drop.field, f"{drop.problem} (--on-error skip drops "
                                                                       f"such rows and counts them)") from None
                    if len(errors) < MAX_LISTED_ERRORS:
                        errors.append(f"{error} [{drop.reason}]")
                drops[drop.reason] += 1
                continue
            schemas[schema] += 1
            (safety if schema == "beavertails" else prefs).append(rec)
    bar.close()
    return prefs, safety, drops, errors, schemas, rows_read


def _schema_for(src, forced: str) -> str:
    if forced != "auto":
        schema = forced
    else:
        schema = src.schema_hint or detect_schema(src.columns)
        if schema is None:
            raise _undetected(src)
    # PKU 2024's extra columns and BeaverTails' category are optional: only the core ones must exist.
    core = "pku2023" if schema == "pku2024" else schema
    missing = [c for c in missing_columns(core, src.columns) if c != "category"]
    if missing and src.columns:
        raise DataError(src.label, None, missing[0], f"column missing for schema {schema} "
                                                     f"(columns: {', '.join(src.columns[:12])})")
    return schema


def _undetected(src) -> DataError:
    """Why no schema fits: an empty file, rows that are not objects, or the closest schema's missing column."""
    if not src.columns:
        if src.total == 0:
            return DataError(src.label, None, None, "no rows in this file (it is empty)")
        first = next(iter(src.rows), None)
        if first is not None and isinstance(first[1], RowError):
            return DataError(src.label, first[0], first[1].field, first[1].problem)
        return DataError(src.label, None, None, "no row is an object with named fields")
    near, missing = closest_schema(src.columns)
    cols = ", ".join(src.columns[:12])
    if near == "beavertails" and missing == ["is_safe"]:
        # e.g. BeaverTails samples published without their labels: prompts to evaluate on, not training data
        return DataError(src.label, None, "is_safe", f"column missing: BeaverTails QA rows need the is_safe label "
                                                     f"(columns: {cols}). To use these prompts for evaluation, set "
                                                     f"eval.safety_prompts to this file")
    if near is not None:
        return DataError(src.label, None, missing[0], f"column missing: closest schema {near} also needs "
                                                      f"{', '.join(missing)} (columns: {cols}); or pass --schema")
    return DataError(src.label, None, None, f"cannot detect the schema from the columns {cols}; pass --schema")


def _propagate_harmful_prompts(prefs: list[dict], safety: list[dict]) -> None:
    """`is_harmful_prompt` is a property of the prompt: true for every record of a prompt that some record
    (or an unsafe BeaverTails answer) shows to be harmful. Unknown (None, pair schema) stays None otherwise."""
    harmful = {r["prompt"] for r in prefs if r["is_harmful_prompt"]} | {r["prompt"] for r in safety
                                                                         if not r["is_safe"]}
    for r in prefs:
        if r["prompt"] in harmful:
            r["is_harmful_prompt"] = True


def _length_filter(rec: dict, cfg) -> None:
    if cfg.min_tokens is None and cfg.max_tokens is None:
        return
    p = len(rec["prompt"].split())
    responses = [rec["response_0"], rec["response_1"]] if "response_0" in rec else [rec["response"]]
    lengths = [p + len(r.split()) for r in responses]
    if cfg.min_tokens is not None and min(lengths) < cfg.min_tokens:
        raise Drop("too_short")
    if cfg.max_tokens is not None and max(lengths) > cfg.max_tokens:
        raise Drop("too_long")


def _split_prompts(prompts: set[str], cfg, seed: int) -> dict[str, str]:
    """Seeded shuffle of the distinct prompts, cut by the split fractions: no prompt lands in two splits."""
    order = sorted(prompts)
    random.Random(seed).shuffle(order)
    n = len(order)
    n_train = round(n * cfg.train_fraction)
    n_val = min(round(n * cfg.val_fraction), n - n_train)
    if cfg.test_fraction == 0:
        n_val = n - n_train
    cuts = {p: "train" for p in order[:n_train]}
    cuts.update({p: "val" for p in order[n_train:n_train + n_val]})
    cuts.update({p: "test" for p in order[n_train + n_val:]})
    return cuts


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- command line
ARG_TO_KEY = {"dataset": "dataset", "output": "output_dir", "split": "split", "revision": "revision",
              "subset": "subset", "schema": "schema", "on_error": "on_error", "show": "show"}


def cli_main(cfg, args) -> int:
    """`safealign prepare`: command-line flags override the `data` section; default output <run dir>/data."""
    overrides = [(f"data.{key}", getattr(args, attr)) for attr, key in ARG_TO_KEY.items()
                 if getattr(args, attr, None) is not None]
    if overrides:
        cfg = cfg.with_overrides(overrides)
    data, toy = cfg.section("data"), cfg.section("toy")
    summary = run_prepare(data, toy, RunLayout.from_config(cfg).data_dir)
    say(format_summary(summary))
    for rec in summary["samples"]:
        say(json.dumps(rec, ensure_ascii=False))
    return 0


def format_summary(summary: dict) -> str:
    splits = summary["splits"]
    parts = [f"{s} {splits[s]['preference']['records']}" + (f" (+{splits[s]['safety']['rows']} safety)"
                                                             if splits[s]["safety"]["rows"] else "")
             for s in SPLITS]
    dropped = ", ".join(f"{k} {v}" for k, v in summary["dropped"].items()) or "none"
    allp = summary["all"]["preference"]
    lines = [f"prepared {summary['dataset']} -> {summary['output_dir']} in {summary['seconds']} s",
             f"  schemas: {', '.join(f'{k} {v}' for k, v in summary['schemas'].items())}; rows read "
             f"{summary['rows_read']}, kept {summary['rows_kept']}; dropped: {dropped}",
             f"  records: {', '.join(parts)}"]
    lines += [f"  skipped: {e}" for e in summary.get("errors", [])[:5]]
    if allp.get("records"):
        lines.append(f"  better = safer {S._pct(allp['better_is_safer'])}; unsafe responses "
                     f"{S._pct(allp['unsafe_response_share'])}; harmful prompts {allp['harmful_prompts']} (of {allp['prompts']} prompts)")
    return "\n".join(lines)
