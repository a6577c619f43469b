"""Over-refusal: how often a model refuses benign prompts, so a model that refuses everything cannot look safe.

`eval.over_refusal_prompts` names the benign sets, comma-separated: `alpaca-benign` (ordinary instructions,
`alpaca_harmless_val.json` under `eval.safety_prompts_dir`), `test_split` (the benign prompts of the run's
test split), or any local prompt file. At most `eval.max_over_refusal_prompts` of each (a seeded sample) are
answered with the evaluation's generation settings, and the `refusal` judge (GCG's markers) decides what is a
refusal. Writes `<out>/<model>/over_refusal.json` = {judge, n, n_refused, refusal_rate, ci95, benchmarks:
{set: {n, n_refused, refusal_rate, ci95}}} (95% Wilson intervals) and `over_refusal_answers.jsonl`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ConfigError
from ..fileio import write_json, write_jsonl
from .benchmarks import load_prompt_set, sample_per_benchmark
from .stats import rate_block

log = logging.getLogger(__name__)


def over_refusal_prompts(cfg, run_dir) -> list[dict]:
    from .safety import test_split_prompts

    rows: list[dict] = []
    for part in str(cfg.over_refusal_prompts or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part == "test_split":
            rows += [{"prompt": r["prompt"], "category": "benign", "categories": ["benign"],
                      "benchmark": "test_split_benign"} for r in test_split_prompts(Path(run_dir), harmful=False)]
        else:
            rows += load_prompt_set(part, cfg.safety_prompts_dir, cfg.prompt_field, cfg.category_field)
    if not rows:
        raise ConfigError(f"eval.over_refusal_prompts: no benign prompts in {cfg.over_refusal_prompts!r}")
    return sample_per_benchmark(rows, cfg.max_over_refusal_prompts, cfg.seed)


def summarise(rows: list[dict], refused: list[bool]) -> dict:
    block = rate_block(sum(refused), len(refused))
    out = {"judge": "refusal", "n": block["n"], "n_refused": block["k"], "refusal_rate": block["rate"],
           "ci95": block["ci95"], "benchmarks": {}}
    for bench in dict.fromkeys(r["benchmark"] for r in rows):
        flags = [f for r, f in zip(rows, refused) if r["benchmark"] == bench]
        b = rate_block(sum(flags), len(flags))
        out["benchmarks"][bench] = {"n": b["n"], "n_refused": b["k"], "refusal_rate": b["rate"], "ci95": b["ci95"]}
    return out


def evaluate_over_refusal(cfg, name: str, model_path, out_dir, run_dir) -> dict:
    """Answer the benign prompts, count refusals; returns (and writes) over_refusal.json."""
    from ..generation import generate_with_stats
    from .refusal import RefusalJudge

    model_dir = Path(out_dir) / name
    rows = over_refusal_prompts(cfg, run_dir)
    prompts = [r["prompt"] for r in rows]
    log.info("over-refusal: %d benign prompts for %s", len(prompts), name)
    answers, gstats = generate_with_stats(
        model_path, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        seed=cfg.seed, batch_size=cfg.batch_size, cache_path=model_dir / "cache" / "generation.jsonl",
        backend=cfg.backend, desc=f"{name}: benign answers")
    verdicts = RefusalJudge().judge_many(prompts, answers, show_progress=False)
    refused = [d["refused"] for _, d in verdicts]
    result = summarise(rows, refused)
    result.update(model=name, prompt_source=cfg.over_refusal_prompts, generation=gstats.to_dict())
    write_jsonl(model_dir / "over_refusal_answers.jsonl",
                [{"prompt": r["prompt"], "benchmark": r["benchmark"], "answer": a, "refused": f, "marker": d["marker"]}
                 for r, a, f, (_, d) in zip(rows, answers, refused, verdicts)])
    write_json(model_dir / "over_refusal.json", result)
    return result
