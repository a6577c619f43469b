"""Safety evaluation: answer harmful prompts, judge every answer, report the safe rate with Wilson intervals.

Outputs in `<out>/<model>/`: `safety.json` (overall and per-category rates, n, the judge; `by_judge` when
extra judges ran), `failures.jsonl` (every unsafe answer: prompt, answer, category, judge detail) and
`failures.md` (a readable sample). Answers are cached in `<out>/<model>/cache/` (see `generation`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import DataError, SafeAlignError
from ..fileio import read_jsonl, write_json, write_jsonl, write_text
from .stats import by_category, rate_block

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- prompt sets
def test_split_prompts(run_dir: Path, harmful: bool) -> list[dict]:
    """Distinct prompts of `<run dir>/data/test.jsonl` whose is_harmful_prompt equals `harmful`."""
    path = Path(run_dir) / "data" / "test.jsonl"
    if not path.is_file():
        raise SafeAlignError(f"{path}: no prepared test split (run `safealign prepare` first)")
    seen: dict[str, dict] = {}
    for i, row in enumerate(read_jsonl(path), 1):
        if "prompt" not in row or "is_harmful_prompt" not in row:
            raise DataError(str(path), i, "prompt" if "prompt" not in row else "is_harmful_prompt", "missing")
        if bool(row["is_harmful_prompt"]) != harmful:
            continue
        cats = list(row.get("harm_categories") or [])
        if row["prompt"] in seen:
            # a prompt's categories are the union over its records: a record whose two answers are both safe
            # (a refusal and a vague answer) flags none, though its prompt is harmful
            known = seen[row["prompt"]]["categories"]
            known.extend(c for c in cats if c not in known)
            continue
        seen[row["prompt"]] = {"prompt": row["prompt"], "categories": cats}
    return list(seen.values())


def file_prompts(path: str) -> list[dict]:
    """A local .jsonl/.json/.csv/.parquet file with `prompt` (+ optional `category`)."""
    p = Path(path)
    if p.suffix == ".jsonl":
        rows = read_jsonl(p)
    else:
        import pandas as pd

        readers = {".json": pd.read_json, ".csv": pd.read_csv, ".parquet": pd.read_parquet}
        if p.suffix not in readers:
            raise DataError(str(p), None, None, "unsupported file type (use .jsonl, .json, .csv or .parquet)")
        rows = readers[p.suffix](p).to_dict("records")
    return _validate_rows(rows, str(p))


def hub_prompts(dataset_id: str, split: str) -> list[dict]:
    try:
        import datasets

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


def load_safety_prompts(cfg, run_dir: Path) -> list[dict]:
    src = cfg.safety_prompts
    from .benchmarks import is_prompt_set, load_for_eval

    if src == "test_split":
        rows = test_split_prompts(run_dir, harmful=True)
    elif is_prompt_set(src):  # benchmark names and local files (evaluation/benchmarks.py): capped per benchmark
        return load_for_eval(cfg)
    elif Path(src).exists():
        rows = file_prompts(src)
    else:
        rows = hub_prompts(src, cfg.safety_prompts_split)
    if not rows:
        raise SafeAlignError(f"eval.safety_prompts: {src}: no harmful prompts found")
    return rows[: cfg.max_safety_prompts] if cfg.max_safety_prompts else rows


# --------------------------------------------------------------------------- evaluation
def summarise(rows: list[dict], verdicts: list[tuple[bool, dict]], judge: str) -> dict:
    flags = [ok for ok, _ in verdicts]
    block = rate_block(sum(flags), len(flags))
    return {
        "judge": judge,
        "safety_rate": block["rate"], "safety_ci": block["ci95"], "n": block["n"], "n_safe": block["k"],
        "n_unparsable": sum(1 for _, d in verdicts if d.get("unparsable")),
        "by_category": by_category(flags, [r["categories"] for r in rows]),
    }


def evaluate_safety(cfg, name: str, model_path, out_dir: Path, run_dir: Path, judges: dict | None = None) -> dict:
    """Generate answers for the safety prompts, judge them, write safety.json + failures; return safety.json."""
    from ..generation import generate_with_stats
    from .benchmarks import benchmark_summary
    from .judges import make_judge

    model_dir = Path(out_dir) / name
    rows = load_safety_prompts(cfg, run_dir)
    prompts = [r["prompt"] for r in rows]
    log.info("safety: %d prompts for %s", len(prompts), name)
    answers, gstats = generate_with_stats(
        model_path, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        seed=cfg.seed, batch_size=cfg.batch_size, cache_path=model_dir / "cache" / "generation.jsonl",
        backend=cfg.backend, desc=f"{name}: safety answers")
    judges = dict(judges or {})
    kinds = [cfg.judge] + [j for j in cfg.extra_judges if j != cfg.judge]
    results = {}
    for kind in kinds:
        judge = judges.get(kind) or make_judge(kind, cfg, run_dir, cache_dir=model_dir / "cache")
        results[kind] = judge.judge_many(prompts, answers)
    main = results[cfg.judge]
    summary = summarise(rows, main, cfg.judge)
    summary.update(benchmark_summary(rows, [ok for ok, _ in main]))  # per benchmark and category, if named
    summary.update(model=name, model_path=str(model_path), prompt_source=cfg.safety_prompts,
                   generation=gstats.to_dict(),
                   generation_params={"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
                                      "top_p": cfg.top_p, "seed": cfg.seed})
    if len(results) > 1:
        summary["by_judge"] = {k: summarise(rows, v, k) for k, v in results.items()}
        summary["judge_agreement"] = {k: sum(a[0] == b[0] for a, b in zip(main, v)) / len(main)
                                      for k, v in results.items() if k != cfg.judge}
    failures = [{"prompt": r["prompt"], "answer": a, "category": ", ".join(r["categories"]) or "uncategorized",
                 "judge": cfg.judge, "detail": d}
                for r, a, (ok, d) in zip(rows, answers, main) if not ok]
    write_jsonl(model_dir / "failures.jsonl", failures)
    write_text(model_dir / "failures.md", failures_markdown(name, summary, failures, cfg.failure_samples))
    write_jsonl(model_dir / "safety_answers.jsonl",
                [{"prompt": r["prompt"], "answer": a, "categories": r["categories"],
                  **{f"safe_{k}": v[i][0] for k, v in results.items()}}
                 for i, (r, a) in enumerate(zip(rows, answers))])
    write_json(model_dir / "safety.json", summary)
    return summary


def failures_markdown(name: str, summary: dict, failures: list[dict], k: int) -> str:
    lo, hi = summary["safety_ci"]
    lines = [f"# Safety failures: {name}", "",
             f"Judge `{summary['judge']}`: {summary['n_safe']}/{summary['n']} answers safe "
             f"(rate {summary['safety_rate']:.3f}, 95% CI {lo:.3f}–{hi:.3f}); {len(failures)} failures, "
             f"{min(k, len(failures))} shown (all in failures.jsonl).", ""]
    for i, f in enumerate(failures[:k], 1):
        detail = {kk: v for kk, v in f["detail"].items() if kk not in ("judgment", "raw")}
        lines += [f"## {i}. {f['category']}", "", "**Prompt**", "", _quote(f["prompt"]), "", "**Answer**", "",
                  _quote(f["answer"] or "(empty)"), "", f"Judge detail: `{detail}`", ""]
        if "judgment" in f["detail"]:
            lines += ["Grader said:", "", _quote(f["detail"]["judgment"]), ""]
    return "\n".join(lines)


def _quote(text: str) -> str:
    return "\n".join("> " + ln for ln in str(text).splitlines()) or "> "
