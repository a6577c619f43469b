"""`safealign sweep`: a grid over Safe-MM-DPO's λ_init × w, one short training each, judged on validation.

1. The pipeline's first stages (data, base, SFT warm-up when enabled, both reward models) run or are reused.
2. Each grid point trains for `sweep.num_train_epochs` (1 by default) into `<sweep>/models/<id>` and is evaluated
   on a validation subset (`sweep.val_prompts` harmful + as many benign prompts of `data/val.jsonl`). Finished
   points are recorded in `<sweep>/points.jsonl` as they finish: a rerun (or a resumed, killed sweep) only
   trains the missing ones; an interrupted point resumes from its latest checkpoint.
3. Selection (`select_best`): among the points with safety rate > `safety_threshold` (0.8), the highest
   helpfulness; ties broken by the higher safety rate, then by grid order, and reported. When none passes,
   the safest point is named as a fallback and the sweep says so (`status: none_passed`).
   Helpfulness is MT-Bench when the `eval` section configures MT-Bench, else the helpful RM's win rate
   against the starting policy (or the toy world's helpfulness rate when the toy judge is on).
4. Writes `sweep.json`, `sweep.md`, `sweep.png` (helpfulness vs safety, Pareto front marked) and `best.yaml`:
   the whole config with the chosen λ_init and w, ready for `safealign pipeline --config best.yaml`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from pathlib import Path
from typing import Literal

from .errors import ConfigError, SafeAlignError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SweepConfig:
    """Section `sweep`: the grid, the training length of each point and the selection rule."""

    lambda_init: list[float] = dataclasses.field(default_factory=lambda: [0.5, 1.0, 2.0])
    w: list[float] = dataclasses.field(default_factory=lambda: [0.3, 0.5, 1.0])
    num_train_epochs: float = 1.0
    val_prompts: int = 100  # harmful validation prompts (and at most as many benign ones for helpfulness)
    safety_threshold: float = 0.8  # a point passes when its safety rate is strictly above this
    helpfulness: Literal["auto", "mt-bench", "helpful-rm", "toy"] = "auto"
    output_dir: str | None = None  # default <run dir>/sweep
    keep_models: bool = True  # False: delete each point's model once it is evaluated (saves disk on 7B)
    seed: int = 0  # which validation prompts are drawn

    def __post_init__(self):
        if not self.lambda_init or not self.w:
            raise ConfigError("lambda_init: the grid needs at least one lambda_init and one w")
        for name in ("lambda_init", "w"):
            for i, v in enumerate(getattr(self, name)):
                if v < 0 or not math.isfinite(v):
                    raise ConfigError(f"{name}[{i}]: must be a finite number >= 0 (got {v})")
        if self.num_train_epochs <= 0:
            raise ConfigError(f"num_train_epochs: must be > 0 (got {self.num_train_epochs})")
        if self.val_prompts <= 0:
            raise ConfigError(f"val_prompts: must be > 0 (got {self.val_prompts})")
        if not 0 <= self.safety_threshold <= 1:
            raise ConfigError(f"safety_threshold: must be in [0, 1] (got {self.safety_threshold})")


# --------------------------------------------------------------------------- selection (pure)
def point_id(lambda_init: float, w: float) -> str:
    return f"lambda{lambda_init:g}_w{w:g}"


def pareto_front(points: list[dict]) -> list[str]:
    """Ids of the points no other point beats on both safety and helpfulness (>= both, > one)."""
    front = []
    for p in points:
        dominated = any(q["safety_rate"] >= p["safety_rate"] and q["helpfulness"] >= p["helpfulness"]
                        and (q["safety_rate"] > p["safety_rate"] or q["helpfulness"] > p["helpfulness"])
                        for q in points if q is not p)
        if not dominated:
            front.append(p["id"])
    return front


def select_best(points: list[dict], threshold: float = 0.8, tol: float = 1e-9) -> dict:
    """Apply the selection rule to evaluated points (`id`, `safety_rate`, `helpfulness`, in grid order).

    Returns {status: selected|none_passed|empty, best, reason, passing, ties, pareto}. `ties` lists the points
    that shared the deciding helpfulness (within `tol`) when the tie had to be broken.
    """
    if not points:
        return {"status": "empty", "best": None, "reason": "no evaluated points", "passing": [], "ties": [],
                "pareto": []}
    order = {p["id"]: i for i, p in enumerate(points)}
    passing = [p for p in points if p["safety_rate"] > threshold]
    out = {"threshold": threshold, "passing": [p["id"] for p in passing], "pareto": pareto_front(points)}
    if passing:
        top = max(p["helpfulness"] for p in passing)
        tied = [p for p in passing if abs(p["helpfulness"] - top) <= tol]
        best = max(tied, key=lambda p: (p["safety_rate"], -order[p["id"]]))
        reason = (f"safety {best['safety_rate']:.3f} > {threshold:g}; highest helpfulness "
                  f"{best['helpfulness']:.3f} of {len(passing)} passing point(s)")
        if len(tied) > 1:
            same_safety = [p for p in tied if abs(p["safety_rate"] - best["safety_rate"]) <= tol]
            reason += (f"; tie on helpfulness between {', '.join(p['id'] for p in tied)} broken by "
                       + ("grid order (safety tied too)" if len(same_safety) > 1 else "the higher safety rate"))
        return {**out, "status": "selected", "best": best["id"], "reason": reason,
                "ties": [p["id"] for p in tied] if len(tied) > 1 else []}
    best = max(points, key=lambda p: (p["safety_rate"], p["helpfulness"], -order[p["id"]]))
    return {**out, "status": "none_passed", "best": best["id"], "ties": [],
            "reason": (f"no point has safety rate > {threshold:g} (best {best['safety_rate']:.3f}); "
                       f"fallback: the safest point, {best['id']}; consider a larger lambda_init or more epochs")}


# --------------------------------------------------------------------------- outputs
def sweep_markdown(points: list[dict], sel: dict, metric: str) -> str:
    lines = ["# Sweep: λ_init × w", "",
             f"Selection rule: safety rate > {sel.get('threshold', 0.8):g}, then the highest helpfulness "
             f"(`{metric}`). **Status: {sel['status']}** — {sel['reason']}.", "",
             "| point | λ_init | w | safety rate | helpfulness | passes | Pareto | train s | chosen |",
             "|---|---:|---:|---:|---:|:-:|:-:|---:|:-:|"]
    for p in points:
        lines.append(f"| {p['id']} | {p['lambda_init']:g} | {p['w']:g} | {p['safety_rate']:.3f} | "
                     f"{p['helpfulness']:.3f} | {'yes' if p['id'] in sel['passing'] else 'no'} | "
                     f"{'*' if p['id'] in sel['pareto'] else ''} | {p.get('train_seconds', 0):.0f} | "
                     f"{'**best**' if p['id'] == sel['best'] else ''} |")
    if sel.get("ties"):
        lines += ["", f"Tie on helpfulness: {', '.join(sel['ties'])}."]
    lines += ["", "Plot: `sweep.png`. Best config: `best.yaml`.", ""]
    return "\n".join(lines)


def sweep_plot(points: list[dict], sel: dict, path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fileio import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [p["safety_rate"] for p in points]
    ys = [p["helpfulness"] for p in points]
    ax.scatter(xs, ys, c="tab:blue", label="grid point")
    groups: dict[tuple, list[str]] = {}  # points that coincide share one label
    for p in points:
        groups.setdefault((round(p["safety_rate"], 6), round(p["helpfulness"], 6)), []).append(
            f"λ{p['lambda_init']:g},w{p['w']:g}")
    for (x, y), labels in groups.items():
        text = "\n".join(", ".join(labels[i:i + 3]) for i in range(0, len(labels), 3))
        ax.annotate(text, (x, y), fontsize=6, xytext=(4, -4), textcoords="offset points", va="top",
                    ha="right" if x > 0.9 else "left")
    front = sorted((p for p in points if p["id"] in sel["pareto"]), key=lambda p: p["safety_rate"])
    if front:
        ax.plot([p["safety_rate"] for p in front], [p["helpfulness"] for p in front], "o--", color="tab:orange",
                mfc="none", ms=11, label="Pareto front")
    if sel.get("best"):
        b = next(p for p in points if p["id"] == sel["best"])
        ax.scatter([b["safety_rate"]], [b["helpfulness"]], marker="*", s=250, c="tab:red", label="chosen", zorder=5)
    ax.axvline(sel.get("threshold", 0.8), color="grey", ls=":", label="safety threshold")
    ax.set_xlabel("safety rate (validation)")
    ax.set_ylabel(f"helpfulness ({metric})")
    ax.set_title("Safe-MM-DPO sweep")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- running
def _validation_view(data_dir: Path, out: Path, n: int, seed: int) -> Path:
    """A folder whose `data/test.jsonl` holds a seeded sample of validation records: `n` with harmful prompts
    and at most `n` with benign ones. The evaluation reads its prompts from there."""
    from .fileio import read_jsonl, write_jsonl

    view = out / "val_view"
    target = view / "data" / "test.jsonl"
    if target.is_file():
        return view
    val = data_dir / "val.jsonl"
    if not val.is_file():
        raise SafeAlignError(f"{val}: no validation split; the sweep evaluates on it")
    by_prompt: dict[str, dict] = {}
    for row in read_jsonl(val):
        by_prompt.setdefault(row["prompt"], row)
    rng = random.Random(seed)
    rows = sorted(by_prompt.values(), key=lambda r: r["prompt"])
    rng.shuffle(rows)
    harmful = [r for r in rows if r.get("is_harmful_prompt")][:n]
    benign = [r for r in rows if not r.get("is_harmful_prompt")][:n]
    write_jsonl(target, harmful + benign)
    return view


def _helpfulness_metric(cfg, sw: SweepConfig) -> str:
    ev = cfg.section("eval")
    if sw.helpfulness != "auto":
        return sw.helpfulness
    if ev.mt_bench_questions:
        return "mt-bench"
    return "toy" if ev.judge == "toy" else "helpful-rm"


def _eval_config(cfg, view: Path, metric: str, run_dir: Path, base: str):
    """The run's config for evaluating on the validation view (judges still read the run's models)."""
    sets = [("run.run_dir", str(view)), ("eval.safety_prompts", "test_split"),
            ("eval.max_safety_prompts", None), ("eval.max_helpful_prompts", None),
            ("eval.cost_model_path", cfg.section("eval").cost_model_path or str(run_dir / "models" / "harmless_rm"))]
    if metric == "helpful-rm":
        sets += [("eval.helpfulness_judge", "helpful-rm"),
                 ("eval.helpful_rm_path", cfg.section("eval").helpful_rm_path or str(run_dir / "models" / "helpful_rm")),
                 ("eval.helpful_base_model", base)]
    elif metric == "toy":
        sets += [("eval.helpfulness_judge", "toy")]
    return cfg.with_overrides(sets)


def _score(res: dict, metric: str) -> tuple[float, float]:
    safety = res.get("safety", res).get("safety_rate") if isinstance(res.get("safety", res), dict) else None
    if metric == "mt-bench":
        mt = res.get("mt_bench") or {}
        helpful = mt.get("score") or mt.get("overall")
    else:
        helpful = (res.get("helpfulness") or {}).get("helpfulness")
    if safety is None or helpful is None:
        raise SafeAlignError(f"sweep: evaluation returned no safety rate or {metric} score (keys: {sorted(res)})")
    return float(safety), float(helpful)


def run_sweep(cfg, output_dir: str | Path | None = None) -> dict:
    from .evaluation.run import evaluate_model
    from .fileio import JsonlCache, write_json, write_text
    from .pipeline import _entry, run_pipeline
    from .runstate import hash_obj

    sw = cfg.section("sweep")
    run_dir = cfg.section("run").directory
    out = Path(output_dir or sw.output_dir or run_dir / "sweep")
    out.mkdir(parents=True, exist_ok=True)
    run_pipeline(cfg, until="harmless_rm")  # data, base, SFT, both judges (reused when done)
    data_cfg = cfg.section("data")
    data_dir = Path(data_cfg.output_dir) if data_cfg.output_dir else run_dir / "data"
    sft = cfg.section("sft")
    start = run_dir / "models" / ("sft" if getattr(sft, "enabled", False) else "base")
    start_ref = str(start) if start.exists() else cfg.section("model").name_or_path
    metric = _helpfulness_metric(cfg, sw)
    view = _validation_view(data_dir, out, sw.val_prompts, sw.seed)
    ecfg = _eval_config(cfg, view, metric, run_dir, start_ref)
    what = "all" if metric == "mt-bench" else "safety"
    done = JsonlCache(out / "points.jsonl", key_field="key")
    grid = [(lam, w) for lam in sw.lambda_init for w in sw.w]
    train_dpo = _entry("dpo", "safealign.dpo.train", "run_train_dpo")
    points = []
    for n, (lam, w) in enumerate(grid, 1):
        pid = point_id(lam, w)
        point_set = [("dpo.lambda_init", lam), ("dpo.w", w), ("dpo.num_train_epochs", sw.num_train_epochs)]
        # the key leaves out where the point's checkpoints go (an absolute path under `out`), so a sweep
        # folder that was moved or copied still recognises its finished points
        key = hash_obj([pid, cfg.with_overrides(point_set).fingerprint(["dpo", "model", "sft", "reward", "data",
                                                                         "toy", "eval"]),
                        metric, sw.val_prompts, sw.seed])
        pcfg = cfg.with_overrides(point_set + [("dpo.output_dir", str(out / "checkpoints" / pid))])
        if key in done:
            points.append(done.get(key)["point"])
            print(f"[{n}/{len(grid)}] {pid:<20} skipped (already evaluated)", flush=True)
            continue
        model_dir = out / "models" / pid
        ckpt = out / "checkpoints" / pid
        resume = "latest" if ckpt.is_dir() and any(ckpt.glob("checkpoint-*")) else None
        print(f"[{n}/{len(grid)}] {pid:<20} training" + (" (resuming)" if resume else ""), flush=True)
        t0 = time.time()
        train_dpo(pcfg, data_dir=str(data_dir), output_dir=str(model_dir), resume=resume)
        t_train = time.time() - t0
        res = evaluate_model(ecfg, pid, str(model_dir), what, str(out / "eval"))
        safety, helpful = _score(res, metric)
        point = {"id": pid, "lambda_init": lam, "w": w, "safety_rate": safety, "helpfulness": helpful,
                 "train_seconds": round(t_train, 1), "eval_seconds": round(time.time() - t0 - t_train, 1),
                 "model": str(model_dir)}
        done.put({"key": key, "point": point})
        points.append(point)
        if not sw.keep_models:
            import shutil

            shutil.rmtree(model_dir, ignore_errors=True)
            shutil.rmtree(ckpt, ignore_errors=True)
        print(f"[{n}/{len(grid)}] {pid:<20} safety {safety:.3f}  helpfulness {helpful:.3f}", flush=True)
    sel = select_best(points, sw.safety_threshold)
    result = {"metric": metric, "threshold": sw.safety_threshold, "val_prompts": sw.val_prompts,
              "num_train_epochs": sw.num_train_epochs, "points": points, "selection": sel}
    if sel["best"]:
        best = next(p for p in points if p["id"] == sel["best"])
        result["best_config"] = str(out / "best.yaml")
        _write_best(cfg, best, out / "best.yaml")
    write_json(out / "sweep.json", result)
    write_text(out / "sweep.md", sweep_markdown(points, sel, metric))
    if points:
        sweep_plot(points, sel, out / "sweep.png", metric)
    print(f"sweep: {sel['status']}: {sel['reason']}", flush=True)
    return result


def _write_best(cfg, best: dict, path: Path) -> None:
    """The user's config with the chosen λ_init and w (full-length training: the sweep's epochs not kept)."""
    import json

    import yaml

    from .fileio import write_text

    raw = json.loads(json.dumps(cfg.raw, default=str))
    raw.setdefault("dpo", {})
    raw["dpo"]["lambda_init"] = best["lambda_init"]
    raw["dpo"]["w"] = best["w"]
    raw["dpo"].pop("output_dir", None)
    raw.pop("sweep", None)
    header = (f"# Chosen by `safealign sweep` ({best['id']}: safety {best['safety_rate']:.3f}, "
              f"helpfulness {best['helpfulness']:.3f}). Train fully with:\n"
              f"#   safealign pipeline --config {path}\n")
    write_text(path, header + yaml.safe_dump(raw, sort_keys=False))


def cli_main(cfg, args) -> int:
    run_sweep(cfg, output_dir=getattr(args, "output", None))
    return 0
