"""`run_sweep`: train and evaluate every grid point, resumably, then select and write the outputs.

A point is trained by the DPO stage's entry point as stage `sweep_<id>` (checkpoints and TensorBoard under
`layout.checkpoints("sweep_<id>")` / `layout.tensorboard(...)`, the precompute cache shared with the run) into
its own sub-layout's model folder (`layout.sweep_point(id, sweep_dir).aligned()`), then evaluated on the
validation split by the evaluation's entry point (`split="val"`). All evaluations share one results folder,
`<sweep>/eval/`, so the starting policy's answers (the helpful-RM win rate's reference) are generated once.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..dpo.train import run_train_dpo
from ..errors import SafeAlignError
from ..evaluation.run import evaluate_model
from ..fileio import JsonlCache, write_json, write_text
from ..layout import RunLayout
from ..pipeline.runner import run_pipeline
from ..runstate import hash_obj, run_lock
from .config import SweepConfig
from .report import sweep_markdown, sweep_plot, write_best
from .select import point_id, select_best

# What a point's result depends on besides its λ_init and w (its key must not hold an absolute path, so a
# sweep folder that was moved or copied still recognises its finished points).
KEY_SECTIONS = ["dpo", "model", "sft", "reward", "data", "toy", "eval"]


def helpfulness_metric(cfg, sw: SweepConfig) -> str:
    """`sweep.helpfulness`; `auto`: MT-Bench when configured, else the toy (trade-off) judge's rate, else the
    helpful RM."""
    ev = cfg.section("eval")
    if sw.helpfulness != "auto":
        return sw.helpfulness
    if ev.mt_bench_questions:
        return "mt-bench"
    return ev.judge if ev.judge in ("toy", "tradeoff") else "helpful-rm"


def eval_config(cfg, sw: SweepConfig, metric: str):
    """The run's config for judging a point: the validation split's prompts (at most `sweep.val_prompts`
    harmful and as many benign ones), helpfulness by the sweep's metric."""
    sets = [("eval.safety_prompts", "test_split"), ("eval.max_safety_prompts", sw.val_prompts),
            ("eval.max_helpful_prompts", sw.val_prompts)]
    if metric in ("helpful-rm", "toy", "tradeoff"):
        sets.append(("eval.helpfulness_judge", metric))
    return cfg.with_overrides(sets)


def _score(res: dict, metric: str) -> tuple[float, float]:
    safety = (res.get("safety") or {}).get("safety_rate")
    if metric == "mt-bench":
        mt = res.get("mt_bench") or {}
        helpful = mt.get("score") or mt.get("overall")
    else:
        helpful = (res.get("helpfulness") or {}).get("helpfulness")
    if safety is None or helpful is None:
        raise SafeAlignError(f"sweep: evaluation returned no safety rate or {metric} score (keys: {sorted(res)})")
    return float(safety), float(helpful)


def run_sweep(cfg, output_dir: str | Path | None = None) -> dict:
    """The grid, trained and evaluated point by point in the run directory (locked meanwhile, as the pipeline
    locks it: a pipeline on the same directory would write the same data, judges and checkpoints)."""
    with run_lock(RunLayout.from_config(cfg)):
        return _run_sweep(cfg, output_dir)


def _run_sweep(cfg, output_dir: str | Path | None = None) -> dict:
    sw = cfg.section("sweep")
    layout = RunLayout.from_config(cfg)
    out = Path(output_dir or sw.output_dir or layout.sweep)
    out.mkdir(parents=True, exist_ok=True)
    run_pipeline(cfg, until="harmless_rm")  # data, base, SFT, both judges (reused when done)
    metric = helpfulness_metric(cfg, sw)
    ecfg = eval_config(cfg, sw, metric)
    what = "all" if metric == "mt-bench" else "safety"
    done = JsonlCache(out / "points.jsonl", key_field="key")
    grid = [(lam, w) for lam in sw.lambda_init for w in sw.w]
    points = []
    for n, (lam, w) in enumerate(grid, 1):
        pid = point_id(lam, w)
        pcfg = cfg.with_overrides([("dpo.lambda_init", lam), ("dpo.w", w),
                                   ("dpo.num_train_epochs", sw.num_train_epochs)])
        key = hash_obj([pid, pcfg.fingerprint(KEY_SECTIONS), metric, sw.val_prompts])
        if key in done:
            points.append(done.get(key)["point"])
            print(f"[{n}/{len(grid)}] {pid:<20} skipped (already evaluated)", flush=True)
            continue
        stage = f"sweep_{pid}"
        model_dir, ckpt = layout.sweep_point(pid, out).aligned(), layout.checkpoints(stage)
        resume = "latest" if ckpt.is_dir() and any(ckpt.glob("checkpoint-*")) else None
        print(f"[{n}/{len(grid)}] {pid:<20} training" + (" (resuming)" if resume else ""), flush=True)
        t0 = time.time()
        summary = run_train_dpo(pcfg, data_dir=str(layout.data_dir), output_dir=str(model_dir), resume=resume,
                                stage=stage)
        t_train = time.time() - t0
        res = evaluate_model(ecfg, pid, str(model_dir), what, str(out / "eval"), split="val")
        safety, helpful = _score(res, metric)
        final = summary.get("final_eval") or {}  # the trainer's pairwise validation metrics (tie-breakers)
        point = {"id": pid, "lambda_init": lam, "w": w, "safety_rate": safety, "helpfulness": helpful,
                 "val_helpful_choice": final.get("eval_helpful_choice"), "val_jc": final.get("eval_jc"),
                 "train_seconds": round(t_train, 1), "eval_seconds": round(time.time() - t0 - t_train, 1),
                 "model": str(model_dir)}
        done.put({"key": key, "point": point})
        points.append(point)
        if not sw.keep_models:
            shutil.rmtree(model_dir, ignore_errors=True)
            shutil.rmtree(ckpt, ignore_errors=True)
        print(f"[{n}/{len(grid)}] {pid:<20} safety {safety:.3f}  helpfulness {helpful:.3f}", flush=True)
    sel = select_best(points, sw.safety_threshold)
    result = {"metric": metric, "threshold": sw.safety_threshold, "val_prompts": sw.val_prompts,
              "num_train_epochs": sw.num_train_epochs, "points": points, "selection": sel}
    if sel["best"]:
        best = next(p for p in points if p["id"] == sel["best"])
        result["best_config"] = str(out / "best.yaml")
        write_best(cfg, best, out / "best.yaml")
    write_json(out / "sweep.json", result)
    write_text(out / "sweep.md", sweep_markdown(points, sel, metric))
    if points:
        sweep_plot(points, sel, out / "sweep.png", metric)
    print(f"sweep: {sel['status']}: {sel['reason']}", flush=True)
    return result


def cli_main(cfg, args) -> int:
    run_sweep(cfg, output_dir=getattr(args, "output", None))
    return 0
