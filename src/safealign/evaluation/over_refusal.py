"""Over-refusal: how often a model refuses benign prompts, so a model that refuses everything cannot look safe.

`eval.over_refusal_prompts` names the benign sets, comma-separated: `alpaca-benign` (ordinary instructions,
`alpaca_harmless_val.json` under `eval.safety_prompts_dir`), `test_split` (the benign prompts of the
evaluated split), or any local prompt file (read by `prompts.load_over_refusal_prompts`). At most
`eval.max_over_refusal_prompts` of each (a seeded sample) are answered with the evaluation's generation
settings, and the `refusal` judge (GCG's markers) decides what is a refusal. Writes `<out>/<model>/over_refusal.json` = {judge, n, n_refused, refusal_rate, ci95, benchmarks:
{set: {n, n_refused, refusal_rate, ci95}}} (95% Wilson intervals) and `over_refusal_answers.jsonl`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..fileio import write_json, write_jsonl
from ..layout import RunLayout, generation_cache
from .answers import answer_prompts
from .judges import RefusalJudge
from .prompts import load_over_refusal_prompts
from .stats import rate_block

log = logging.getLogger(__name__)


def summarise(rows: list[dict], refused: list[bool]) -> dict:
    block = rate_block(sum(refused), len(refused))
    out = {"judge": "refusal", "n": block["n"], "n_refused": block["k"], "refusal_rate": block["rate"],
           "ci95": block["ci95"], "benchmarks": {}}
    for bench in dict.fromkeys(r["benchmark"] for r in rows):
        flags = [f for r, f in zip(rows, refused) if r["benchmark"] == bench]
        b = rate_block(sum(flags), len(flags))
        out["benchmarks"][bench] = {"n": b["n"], "n_refused": b["k"], "refusal_rate": b["rate"], "ci95": b["ci95"]}
    return out


def evaluate_over_refusal(cfg, name: str, model_path, out_dir, layout: RunLayout, split: str = "test",
                          chat_template: str | None = None) -> dict:
    """Answer the benign prompts, count refusals; returns (and writes) over_refusal.json. `cfg` is the `eval`
    section; `split` the prepared split whose benign prompts `test_split` means."""
    model_dir = Path(out_dir) / name
    rows = load_over_refusal_prompts(cfg, layout, split)
    prompts = [r["prompt"] for r in rows]
    log.info("over-refusal: %d benign prompts for %s", len(prompts), name)
    answers, gstats = answer_prompts(cfg, model_path, prompts, generation_cache(model_dir), f"{name}: benign answers", chat_template)
    verdicts = RefusalJudge().judge_many(prompts, answers, show_progress=False)
    refused = [d["refused"] for _, d in verdicts]
    result = summarise(rows, refused)
    result.update(model=name, prompt_source=cfg.over_refusal_prompts, generation=gstats.to_dict())
    write_jsonl(model_dir / "over_refusal_answers.jsonl",
                [{"prompt": r["prompt"], "benchmark": r["benchmark"], "answer": a, "refused": f, "marker": d["marker"]}
                 for r, a, f, (_, d) in zip(rows, answers, refused, verdicts)])
    write_json(model_dir / "over_refusal.json", result)
    return result
