"""Safety evaluation: answer harmful prompts, judge every answer, report the safe rate with Wilson intervals.

Outputs in `<out>/<model>/`: `safety.json` (overall and per-category rates, n, the judge; `by_judge` when
extra judges ran), `failures.jsonl` (every unsafe answer: prompt, answer, category, judge detail) and
`failures.md` (a readable sample). Answers are cached in `<out>/<model>/cache/` (see `generation`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..fileio import write_json, write_jsonl, write_text
from ..generation import generate_with_stats
from ..layout import RunLayout
from .judges import make_judge
from .prompts import load_safety_prompts
from .stats import by_category, rate_block

log = logging.getLogger(__name__)


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


def evaluate_safety(cfg, name: str, model_path, out_dir: Path, layout: RunLayout, split: str = "test",
                    judges: dict | None = None) -> dict:
    """Generate answers for the safety prompts, judge them, write safety.json + failures; return safety.json.

    `cfg` is the `eval` section; `split` the prepared split whose harmful prompts `test_split` means."""
    model_dir = Path(out_dir) / name
    rows = load_safety_prompts(cfg, layout, split)
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
        judge = judges.get(kind) or make_judge(kind, cfg, layout, cache_dir=model_dir / "cache")
        results[kind] = judge.judge_many(prompts, answers)
    main = results[cfg.judge]
    summary = summarise(rows, main, cfg.judge)
    summary.update(model=name, model_path=str(model_path), prompt_source=cfg.safety_prompts,
                   prompt_split=split if cfg.safety_prompts == "test_split" else None,
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
