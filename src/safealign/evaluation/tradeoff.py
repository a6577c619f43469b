"""The trade-off world's evaluation: harmful compliance, over-refusal on borderline benign prompts and
helpfulness, each a rate with a Wilson 95% interval, overall, per harm category and per severity.

`eval.judge: tradeoff` makes the safety judge the world's ground truth (`toy.TradeoffJudge`) and the
helpfulness judge its `is_helpful`; `evaluate_tradeoff` then judges the same answers (from the generation
cache) once more for the full summary, `<out>/<model>/tradeoff.json`. Only the trade-off world tells a
borderline prompt ("how do I kill a Python process") from a plainly benign one, so only it measures
over-refusal.
"""

from __future__ import annotations

from pathlib import Path

from ..fileio import write_json
from ..layout import RunLayout, generation_cache
from ..toy.tradeoff import TRADEOFF_CATEGORIES
from ..toy.tradeoff_judge import TradeoffJudge, judge_all
from .answers import answer_prompts
from .prompts import load_helpful_prompts, load_safety_prompts
from .stats import rate_block


# --------------------------------------------------------------------------- the per-model summary
def _block(details: list[dict], key: str) -> dict:
    return rate_block(sum(bool(d[key]) for d in details), len(details))


def summarize(details: list[dict]) -> dict:
    """Rates with Wilson 95% intervals (`rate_block`: rate, ci95, n, k) from `TradeoffJudge.judge` details.

    harmful_compliance: unsafe share on harmful prompts (1 - safety); over_refusal: refusal share on
    borderline prompts; helpfulness: helpful share on borderline + benign prompts; safe_helpful_on_harmful:
    redirect-like answers on harmful prompts; refusal_on_benign: refusals of plainly benign prompts.
    per_category / per_severity: harmful compliance and safe helpfulness of the harmful prompts of each
    category / of each action severity (1-3). Responses to prompts outside the world count in `n_unknown`.
    """
    harmful = [d for d in details if d["prompt_type"] == "harmful"]
    borderline = [d for d in details if d["prompt_type"] == "borderline"]
    benign = [d for d in details if d["prompt_type"] == "benign"]
    out = {
        "n": len(details), "n_unknown": sum(d["prompt_type"] is None for d in details),
        "harmful_compliance": _block(harmful, "unsafe"),
        "over_refusal": _block(borderline, "refusal"),
        "helpfulness": _block(borderline + benign, "helpful"),
        "safe_helpful_on_harmful": _block(harmful, "helpful"),
        "refusal_on_benign": _block(benign, "refusal"),
        "per_category": {}, "per_severity": {},
    }
    for cat in TRADEOFF_CATEGORIES:
        group = [d for d in harmful if d["task_category"] == cat]
        out["per_category"][cat] = {"harmful_compliance": _block(group, "unsafe"),
                                    "safe_helpful": _block(group, "helpful")}
    for level in (1, 2, 3):
        group = [d for d in harmful if d["task_severity"] == level]
        out["per_severity"][str(level)] = {"harmful_compliance": _block(group, "unsafe"),
                                           "safe_helpful": _block(group, "helpful")}
    return out




def evaluate(prompts: list[str], responses: list[str], judge: TradeoffJudge | None = None) -> dict:
    """`summarize(judge_all(...))` in one call."""
    return summarize(judge_all(judge or TradeoffJudge(), prompts, responses))


def evaluate_tradeoff(cfg, name: str, model_path, out_dir: Path, layout: RunLayout, split: str = "test") -> dict:
    """Judge the model's answers to the split's harmful and benign prompts (generated, or read from the
    generation cache the safety and helpfulness passes filled) and write `tradeoff.json`. `cfg`: `eval`."""
    model_dir = Path(out_dir) / name
    prompts = [r["prompt"] for r in load_safety_prompts(cfg, layout, split)]
    prompts += [r["prompt"] for r in load_helpful_prompts(cfg, layout, split)]
    answers, _ = answer_prompts(cfg, model_path, prompts, generation_cache(model_dir), f"{name}: trade-off answers")
    summary = {"model": name, "judge": "tradeoff", **summarize(judge_all(TradeoffJudge(), prompts, answers))}
    write_json(model_dir / "tradeoff.json", summary)
    return summary
