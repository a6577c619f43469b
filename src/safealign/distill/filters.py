"""Distillation data selection: which prompts the teacher answers, and which of its answers the student learns from.

Pure functions over plain rows (no models here), so the selection logic is tested on hand-made scores.

Filters, applied in order to every sampled answer (an empty answer is dropped first):
1. **cost**: keep when the cost model's cost < `max_cost` (c > 0 ⇔ unsafe, so the default 0 keeps answers the
   cost model calls safe);
2. **helpful**: of the answers that passed (1), keep those whose helpful score ≥ the `helpful_quantile`
   quantile. Scope `prompt` (default) takes the quantile among the safe answers *to the same prompt* — a
   best-of-n choice that keeps refusals to harmful prompts (a global quantile would drop nearly all of them,
   since a refusal is rarely as "helpful" as an answer to a benign question, and the student would never
   learn to refuse). Scope `global` takes it over all safe answers.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Sequence

from ..data.records import prompts_of

REASON_COST = "cost"
REASON_HELPFUL = "helpful"
REASON_EMPTY = "empty"


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method) of a non-empty sequence."""
    if not values:
        raise ValueError("quantile of an empty sequence")
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def sample_prompts(records: Sequence[dict], num_prompts: int, harmful_fraction: float, seed: int) -> list[dict]:
    """Distinct prompts of canonical `records`, `harmful_fraction` of them harmful, drawn with `seed`.

    A prompt is harmful when any of its records is. Returns [{prompt, is_harmful_prompt}]. When one kind
    runs short, the other fills the gap so the count holds as long as the records have enough prompts.
    """
    flagged = {p["prompt"] for p in prompts_of(records, harmful=True)}
    every = [p["prompt"] for p in prompts_of(records)]
    harmful = sorted(p for p in every if p in flagged)
    benign = sorted(p for p in every if p not in flagged)
    rng = random.Random(seed)
    rng.shuffle(harmful)
    rng.shuffle(benign)
    num_prompts = min(num_prompts, len(every))
    want_harmful = min(round(num_prompts * harmful_fraction), len(harmful))
    want_benign = min(num_prompts - want_harmful, len(benign))
    want_harmful = min(num_prompts - want_benign, len(harmful))
    chosen = [{"prompt": p, "is_harmful_prompt": True} for p in harmful[:want_harmful]]
    chosen += [{"prompt": p, "is_harmful_prompt": False} for p in benign[:want_benign]]
    rng.shuffle(chosen)
    return chosen


def apply_filters(samples: list[dict], max_cost: float = 0.0, helpful_quantile: float = 0.5,
                  scope: str = "prompt") -> dict:
    """Mark every sample {prompt, response, helpful_score, cost, ...} with `kept` and `reasons` (in place).

    Returns the report: counts passing each filter (overall and by prompt kind), the thresholds used.
    """
    if scope not in ("prompt", "global"):
        raise ValueError(f"scope: must be prompt or global (got {scope!r})")
    for s in samples:
        s["reasons"] = []
        if not str(s["response"]).strip():  # an empty answer would teach the student to stop at once
            s["reasons"].append(REASON_EMPTY)
        if not s["cost"] < max_cost:
            s["reasons"].append(REASON_COST)
    safe = [s for s in samples if not s["reasons"]]
    thresholds: dict[str, float] = {}
    if scope == "global":
        if safe:
            thresholds["*"] = quantile([s["helpful_score"] for s in safe], helpful_quantile)
    else:
        by_prompt: dict[str, list[float]] = defaultdict(list)
        for s in safe:
            by_prompt[s["prompt"]].append(s["helpful_score"])
        thresholds = {p: quantile(v, helpful_quantile) for p, v in by_prompt.items()}
    for s in safe:
        limit = thresholds["*"] if scope == "global" else thresholds[s["prompt"]]
        # tiny tolerance: float noise must not drop the answer that *is* the quantile
        if s["helpful_score"] < limit - 1e-9 * max(1.0, abs(limit)):
            s["reasons"].append(REASON_HELPFUL)
    for s in samples:
        s["kept"] = not s["reasons"]
    return filter_report(samples, max_cost, helpful_quantile, scope,
                         thresholds.get("*") if scope == "global" else None)


def filter_report(samples: list[dict], max_cost: float, helpful_quantile: float, scope: str,
                  global_threshold: float | None) -> dict:
    def counts(group: list[dict]) -> dict:
        passed_cost = [s for s in group if REASON_COST not in s["reasons"] and REASON_EMPTY not in s["reasons"]]
        kept = [s for s in group if s["kept"]]
        prompts = {s["prompt"] for s in group}
        return {
            "samples": len(group),
            "empty": sum(REASON_EMPTY in s["reasons"] for s in group),
            "passed_cost": len(passed_cost),  # non-empty and cost < max_cost
            "passed_helpful": len(kept),  # of those that passed the cost filter
            "kept": len(kept),
            "kept_fraction": len(kept) / len(group) if group else 0.0,
            "prompts": len(prompts),
            "prompts_with_kept": len({s["prompt"] for s in kept}),
        }

    report = {
        "filters": {"max_cost": max_cost, "helpful_quantile": helpful_quantile, "helpful_scope": scope,
                    "helpful_threshold": global_threshold},
        "all": counts(samples),
        "harmful_prompts": counts([s for s in samples if s.get("is_harmful_prompt")]),
        "benign_prompts": counts([s for s in samples if not s.get("is_harmful_prompt")]),
    }
    if samples:
        report["mean_cost"] = sum(s["cost"] for s in samples) / len(samples)
        report["mean_helpful_score"] = sum(s["helpful_score"] for s in samples) / len(samples)
    return report


def filter_report_markdown(report: dict) -> str:
    f = report["filters"]
    lines = ["# Distillation data: filter report", "",
             f"Filters: cost < {f['max_cost']}; helpful score ≥ the {f['helpful_quantile']:g} quantile "
             f"({'per prompt, among its safe answers' if f['helpful_scope'] == 'prompt' else 'over all safe answers'}"
             + (f", threshold {f['helpful_threshold']:.4f}" if f.get("helpful_threshold") is not None else "") + ").",
             "", "| prompts | samples | empty | passed cost | passed helpful | kept | kept % | prompts with a kept answer |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("all", "all"), ("harmful_prompts", "harmful"), ("benign_prompts", "benign")):
        c = report[key]
        lines.append(f"| {label} | {c['samples']} | {c['empty']} | {c['passed_cost']} | {c['passed_helpful']} | {c['kept']} | "
                     f"{100 * c['kept_fraction']:.1f} | {c['prompts_with_kept']} / {c['prompts']} |")
    if "mean_cost" in report:
        lines += ["", f"Mean cost {report['mean_cost']:.4f}; mean helpful score {report['mean_helpful_score']:.4f}."]
    return "\n".join(lines) + "\n"


def split_by_prompt(kept: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Train/validation split by prompt, so validation prompts are unseen in training."""
    prompts = sorted({s["prompt"] for s in kept})
    random.Random(seed).shuffle(prompts)
    n_val = int(round(len(prompts) * val_fraction)) if len(prompts) > 1 else 0
    val_prompts = set(prompts[:n_val])
    train = [{"prompt": s["prompt"], "response": s["response"]} for s in kept if s["prompt"] not in val_prompts]
    val = [{"prompt": s["prompt"], "response": s["response"]} for s in kept if s["prompt"] in val_prompts]
    return train, val
