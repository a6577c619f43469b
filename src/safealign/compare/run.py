"""`run_compare`: every method on every seed, resumably, then the aggregate outputs.

Per seed, the pipeline's first stages (`run_pipeline(..., until="harmless_rm")`: data split, tiny base, SFT
warm-up, both judges) run in the seed's own layout (`RunLayout.compare_seed`) or are reused; the starting
policy is evaluated as `base`; then each method trains (`run_train_dpo`, stage `compare_<method>`, the seed's
precompute cache) and is evaluated on the seed's test prompts (`evaluate_model`). A finished (method, seed)
is recorded in `points.jsonl` at once, so a rerun or a killed comparison only does what is missing.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from ..dpo.train import run_train_dpo
from ..errors import ConfigError
from ..evaluation.run import evaluate_model
from ..fileio import JsonlCache, write_json, write_text
from ..layout import RunLayout
from ..pipeline.runner import run_pipeline
from ..runstate import hash_obj
from .aggregate import (compare_markdown, compare_plot, paired_difference, pareto_methods, per_category_table,
                        summarize_method)
from .methods import METHODS, method_config

log = logging.getLogger(__name__)
# What a (method, seed) result depends on besides its name and seed (no path: a moved folder still counts).
KEY_SECTIONS = ["dpo", "model", "sft", "reward", "data", "toy", "eval"]
# What each component of Safe-MM-DPO changes: (name, with it, without it), paired over seeds.
COMPONENTS = [("dynamic β", "safe_mm_dpo", "safe_dpo"), ("dual λ", "safe_dpo", "safe_dpo_fixed_lambda"),
              ("on-policy J_C", "safe_mm_dpo_on_policy", "safe_mm_dpo"),
              ("per-category λ", "safe_mm_dpo_per_category", "safe_mm_dpo")]


def seed_config(cfg, seed: int):
    """Seed `seed`'s config: its own run folder (`RunLayout.compare_seed`), run.seed, data.seed (the split) and
    eval.seed (sampling) each shifted by `seed`."""
    layout = RunLayout.from_config(cfg).compare_seed(seed)
    run, data, ev = cfg.section("run"), cfg.section("data"), cfg.section("eval")
    return cfg.with_overrides([("run.run_dir", str(layout.root)), ("run.seed", run.seed + seed),
                               ("data.seed", data.seed + seed), ("data.output_dir", None),
                               ("eval.seed", ev.seed + seed)])


def result_point(name: str, seed: int, res: dict, summary: dict | None = None) -> dict:
    """The numbers compare keeps of one evaluated model (`evaluate_model`'s result, the training summary).

    With the trade-off judge the rates come from its summary, which knows each prompt's true type (the split's
    harmful flag misses a harmful prompt whose records hold only safe answers); else from safety.json and
    helpfulness.json."""
    safety, helpful, trade = res["safety"], res.get("helpfulness") or {}, res.get("tradeoff") or {}
    over = trade.get("over_refusal") or {}
    safe = {"rate": safety["safety_rate"], "ci95": safety["safety_ci"], "n": safety["n"]}
    if trade and trade["harmful_compliance"]["rate"] is not None:
        comp = trade["harmful_compliance"]
        safe = {"rate": 1 - comp["rate"], "ci95": [1 - comp["ci95"][1], 1 - comp["ci95"][0]], "n": comp["n"]}
        helpful = {"helpfulness": trade["helpfulness"]["rate"], "helpfulness_ci": trade["helpfulness"]["ci95"],
                   "n": trade["helpfulness"]["n"]}
    point = {"method": name, "seed": seed, "safety": safe["rate"], "safety_ci": safe["ci95"],
             "n_safety": safe["n"], "over_refusal": over.get("rate"), "over_refusal_ci": over.get("ci95"),
             "n_borderline": over.get("n"), "helpfulness": helpful.get("helpfulness"),
             "helpfulness_ci": helpful.get("helpfulness_ci"), "n_helpful": helpful.get("n"),
             "harmful_compliance_per_category": {c: b["harmful_compliance"]["rate"]
                                                 for c, b in (trade.get("per_category") or {}).items()}}
    if summary:
        constraint = summary.get("constraint") or {}
        point.update(lambda_final=summary["lambda_final"], train_seconds=summary["seconds"],
                     steps=summary["global_step"], selection=(constraint.get("selection") or {}).get("status"),
                     jc_val=(summary.get("final_eval") or {}).get("eval_jc"),
                     lambda_per_group=constraint.get("lambda_final"))
    return point


def run_compare(cfg, methods: list[str] | None = None, seeds: int | None = None,
                output_dir: str | Path | None = None) -> dict:
    cc = cfg.section("compare")
    methods = list(methods or cc.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"--methods: unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    seeds = seeds or cc.seeds
    if seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1 (got {seeds})")
    layout = RunLayout.from_config(cfg)
    out = Path(output_dir or cc.output_dir or layout.compare)
    done = JsonlCache(layout.compare_file("points", out), key_field="key")
    t0 = time.time()
    points: dict[str, list] = {m: [] for m in methods}
    base = []
    for seed in range(seeds):
        scfg = seed_config(cfg, seed)
        slayout = RunLayout.from_config(scfg)
        run_pipeline(scfg, until="harmless_rm")  # data split, base, SFT, both judges (reused when done)
        base.append(_point(done, scfg, slayout, "base", seed, None, cc.keep_models))
        for name in methods:
            points[name].append(_point(done, method_config(scfg, name), slayout, name, seed, name, cc.keep_models))
    result = aggregate(points, base, seeds, time.time() - t0)
    write_json(layout.compare_file("json", out), result)
    write_text(layout.compare_file("md", out), compare_markdown(result))
    compare_plot(result, layout.compare_file("png", out))
    print(f"compare: {layout.compare_file('md', out)} ({result['seconds']:.0f} s)", flush=True)
    return result


def _point(done: JsonlCache, mcfg, slayout: RunLayout, name: str, seed: int, method: str | None,
           keep_models: bool) -> dict:
    """Train (unless `method` is None: the starting policy) and evaluate one (method, seed), or reuse it."""
    key = hash_obj([name, seed, mcfg.fingerprint(KEY_SECTIONS)])
    if key in done:
        print(f"[seed {seed}] {name:<26} done before", flush=True)
        return done.get(key)["point"]
    t0 = time.time()
    summary = None
    model = slayout.policy_start
    if method is not None:
        stage = f"compare_{method}"
        model = str(slayout.aligned(method))
        summary = run_train_dpo(mcfg, data_dir=str(slayout.data_dir), output_dir=model, stage=stage)
    res = evaluate_model(mcfg, name, model, "safety", str(slayout.results))
    point = result_point(name, seed, res, summary)
    point["seconds"] = round(time.time() - t0, 1)
    done.put({"key": key, "point": point})
    if method is not None and not keep_models:
        shutil.rmtree(model, ignore_errors=True)
        shutil.rmtree(slayout.checkpoints(f"compare_{method}"), ignore_errors=True)
    over = "–" if point["over_refusal"] is None else f"{point['over_refusal']:.3f}"
    print(f"[seed {seed}] {name:<26} safety {point['safety']:.3f}  over-refusal {over}  helpfulness "
          f"{point['helpfulness'] if point['helpfulness'] is None else round(point['helpfulness'], 3)}  "
          f"({point['seconds']:.0f} s)", flush=True)
    return point


def aggregate(points: dict[str, list], base: list, seeds: int, seconds: float) -> dict:
    methods = {m: summarize_method(p) for m, p in points.items()}
    result = {"methods": methods, "seeds": seeds, "base": summarize_method(base) if base else None,
              "pareto": pareto_methods(methods), "seconds": round(seconds, 1)}
    result["components"] = {name: {metric: paired_difference(points[a], points[b], metric)
                                   for metric in ("safety", "over_refusal", "helpfulness")} | {"with": a, "without": b}
                            for name, a, b in COMPONENTS if a in points and b in points}
    result["per_category"] = per_category_table(points)
    return result


def cli_main(cfg, args) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if getattr(args, "methods", None) else None
    run_compare(cfg, methods=methods, seeds=getattr(args, "seeds", None), output_dir=getattr(args, "output", None))
    return 0
