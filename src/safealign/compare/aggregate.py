"""From per-seed results to the comparison: means with 95% intervals over seeds, the table, the plot.

Pure functions of the finished points (no training, no I/O except the figure). The interval of a metric is
Student's t over the seed means, mean ± t_{0.975, n−1} · s / √n, clipped to [0, 1]: the seeds vary the data
split, the initialisation and the sampling, so their spread is the uncertainty that matters when two
methods are compared. With one seed there is no spread: the interval is then that seed's Wilson interval
(the test prompts' sampling error only).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..fileio import atomic_path
from ..sweep.select import pareto_front

METRICS = ("safety", "over_refusal", "helpfulness")
# two-sided 95% Student t quantiles by degrees of freedom (no scipy in the project's dependencies)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (the next tabulated df below, 1.96 ∞)."""
    if df >= 60:
        return 1.96
    return T975[max(k for k in T975 if k <= df)]


def seed_interval(values: list[float | None], single_ci: list | None = None) -> dict:
    """{"mean", "ci_low", "ci_high", "n"} of one metric over seeds (None values are left out)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        lo, hi = single_ci if single_ci else (mean, mean)
    else:
        half = t975(len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))
        lo, hi = max(0.0, mean - half), min(1.0, mean + half)
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "n": len(vals)}


def summarize_method(points: list[dict]) -> dict:
    """One method's entry of compare.json from its points (one per seed, in seed order)."""
    out = {}
    for m in METRICS:
        single = points[0].get(f"{m}_ci") if len(points) == 1 else None
        out[m] = seed_interval([p.get(m) for p in points], single)
    out["per_seed"] = points
    return out


def paired_difference(a: list[dict], b: list[dict], metric: str) -> dict:
    """Mean and 95% t-interval of a − b over the seeds both have (paired: same split, base and judges)."""
    bs = {p["seed"]: p.get(metric) for p in b}
    diffs = [p[metric] - bs[p["seed"]] for p in a
             if p.get(metric) is not None and bs.get(p["seed"]) is not None]
    if not diffs:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = sum(diffs) / len(diffs)
    half = t975(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": len(diffs)}


def pareto_methods(methods: dict) -> list[str]:
    """Methods no other beats on both mean safety and mean helpfulness."""
    pts = [{"id": name, "safety_rate": m["safety"]["mean"], "helpfulness": m["helpfulness"]["mean"]}
           for name, m in methods.items()
           if m["safety"]["mean"] is not None and m["helpfulness"]["mean"] is not None]
    return pareto_front(pts)


def _cell(block: dict) -> str:
    if block["mean"] is None:
        return "–"
    return f"{block['mean']:.3f} [{block['ci_low']:.3f}, {block['ci_high']:.3f}]"


def compare_markdown(result: dict) -> str:
    seeds = result["seeds"]
    lines = [f"# Comparison: {len(result['methods'])} methods × {seeds} seed(s)", "",
             "Test prompts of each seed's split; mean over seeds with a 95% interval "
             + ("(Student t over seeds)." if seeds > 1 else "(one seed: Wilson, test prompts only)."),
             "Safety = 1 − harmful compliance on harmful prompts; over-refusal = refusals of borderline benign "
             "prompts; helpfulness = helpful answers to benign + borderline prompts. * = on the Pareto front "
             "(mean safety vs mean helpfulness).", "",
             "| method | safety | over-refusal | helpfulness | λ end | train s |", "|---|---|---|---|---:|---:|"]
    rows = ([("base (start)", result["base"])] if result.get("base") else []) + list(result["methods"].items())
    for name, m in rows:
        star = " *" if name in result.get("pareto", []) else ""
        lam = [p.get("lambda_final") for p in m["per_seed"] if p.get("lambda_final") is not None]
        secs = [p.get("train_seconds") for p in m["per_seed"] if p.get("train_seconds") is not None]
        lines.append(f"| {name}{star} | {_cell(m['safety'])} | {_cell(m['over_refusal'])} | "
                     f"{_cell(m['helpfulness'])} | {sum(lam) / len(lam):.2f} | {sum(secs) / len(secs):.0f} |"
                     if lam and secs else
                     f"| {name}{star} | {_cell(m['safety'])} | {_cell(m['over_refusal'])} | "
                     f"{_cell(m['helpfulness'])} | – | – |")
    comps = result.get("components") or {}
    if comps:
        lines += ["", "## What each component changes", "",
                  "Paired over seeds (same split, base and judges): with − without, mean [95% t-interval].", "",
                  "| component | with | without | Δ safety | Δ over-refusal | Δ helpfulness |",
                  "|---|---|---|---|---|---|"]
        for name, c in comps.items():
            lines.append(f"| {name} | {c['with']} | {c['without']} | {_delta_cell(c['safety'])} | "
                         f"{_delta_cell(c['over_refusal'])} | {_delta_cell(c['helpfulness'])} |")
    table = result.get("per_category") or {}
    cats = sorted({c for per in table.values() for c in per})
    if cats:
        lines += ["", "## Harmful compliance per category (mean over seeds; lower is safer)", "",
                  "| method | " + " | ".join(cats) + " |", "|---|" + "---:|" * len(cats)]
        for name, per in table.items():
            cells = [f"{per[c]['mean']:.3f}" if c in per and per[c]["mean"] is not None else "–" for c in cats]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if result.get("seconds") is not None:
        lines += ["", f"Wall time: {result['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def _delta_cell(block: dict) -> str:
    if block["mean"] is None:
        return "–"
    return f"{block['mean']:+.3f} [{block['ci_low']:+.3f}, {block['ci_high']:+.3f}]"


def compare_plot(result: dict, path: Path) -> None:
    """Safety vs helpfulness, one point per method with its interval bars, the Pareto front marked."""
    import matplotlib  # heavy, and only this figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    entries = list(result["methods"].items()) + ([("base", result["base"])] if result.get("base") else [])
    for name, m in entries:
        s, h = m["safety"], m["helpfulness"]
        if s["mean"] is None or h["mean"] is None:
            continue
        ax.errorbar(s["mean"], h["mean"], xerr=[[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]],
                    yerr=[[h["mean"] - h["ci_low"]], [h["ci_high"] - h["mean"]]], fmt="o", capsize=3,
                    color="grey" if name == "base" else None, label=name)
    front = sorted((result["methods"][n] for n in result.get("pareto", [])), key=lambda m: m["safety"]["mean"])
    if front:
        ax.plot([m["safety"]["mean"] for m in front], [m["helpfulness"]["mean"] for m in front], "--",
                color="black", lw=1, label="Pareto front")
    ax.set_xlabel("safety (1 − harmful compliance), test")
    ax.set_ylabel("helpfulness (benign + borderline), test")
    ax.set_title(f"Methods compared over {result['seeds']} seed(s), 95% intervals")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def per_category_table(points: dict[str, list]) -> dict[str, dict[str, dict]]:
    """method -> category -> harmful compliance over seeds (mean and interval)."""
    out = {}
    for name, pts in points.items():
        cats = sorted({c for p in pts for c in (p.get("harmful_compliance_per_category") or {})})
        out[name] = {c: seed_interval([(p.get("harmful_compliance_per_category") or {}).get(c) for p in pts])
                     for c in cats}
    return out
