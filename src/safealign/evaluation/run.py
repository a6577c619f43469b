"""`safealign evaluate safety|mt-bench|all --model NAME=PATH ...` and `evaluate_model(...)`, the one public
entry every other stage (pipeline, sweep, distill) evaluates through.

`safety` = safety rate (+ helpfulness on the benign prompts when a helpfulness judge is available);
`mt-bench` = MT-Bench; `all` = both (MT-Bench only when `eval.mt_bench_questions` is set). Each model gets
`<out>/<name>/` with its JSON, Markdown and PNG outputs and `eval.json` (what ran, timings). Prompts come from
the prepared `split` (`test` by default; the sweep evaluates on `val`), judges and the base policy from the
run layout.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from ..config import save_resolved
from ..errors import ConfigError
from ..fileio import write_json, write_text
from ..layout import RunLayout
from ..logs import say
from ..models.base import ensure_base_model
from ..models.refs import check_model_ref, hub_load_kwargs
from .agreement import cli_judge
from .helpfulness import evaluate_helpfulness
from .mt_bench import evaluate_mt_bench
from .mt_bench_results import cli_mt_bench_results
from .over_refusal import evaluate_over_refusal
from .safety import evaluate_safety
from .tradeoff import evaluate_tradeoff

log = logging.getLogger(__name__)


def evaluate_model(cfg, name: str, model_path, what: str = "all", out_dir=None, judges: dict | None = None,
                   mt_bench_client=None, *, split: str = "test") -> dict:
    """Evaluate one model; returns {"model", "model_path", "safety", "helpfulness", "mt_bench", "seconds"}.

    `cfg` is the whole `Config`; `out_dir` the results folder (default: the run's `results/`); `split` the
    prepared split whose prompts are asked (`test`, or `val` for the sweep); `judges` may pass ready judge
    objects by kind (e.g. a loaded cost model shared between models).
    """
    if what not in ("safety", "mt-bench", "all"):
        raise ConfigError(f"evaluate: what must be safety, mt-bench or all (got {what!r})")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"--model {name}: a model name may hold only letters, digits, '.', '_' and '-'")
    ev = cfg.section("eval")
    layout = RunLayout.from_config(cfg)
    if isinstance(model_path, (str, Path)):  # a folder that is no model, or a missing one: one line, now
        check_model_ref(str(model_path))
    # Every tokenizer gets the run's conversation format (models this run trained already carry it).
    template = cfg.section("model").chat_template
    out_dir = Path(out_dir or layout.results)
    model_dir = out_dir / name
    result: dict = {"model": name, "model_path": str(model_path), "what": what, "split": split, "seconds": {}}
    if what in ("safety", "all"):
        t = time.perf_counter()
        result["safety"] = evaluate_safety(ev, name, model_path, out_dir, layout, split, judges=judges,
                                           chat_template=template)
        result["helpfulness"] = evaluate_helpfulness(ev, name, model_path, out_dir, layout, split,
                                                     chat_template=template)
        if ev.over_refusal_prompts:  # refusals of benign prompts, so refusing everything cannot look safe
            result["over_refusal"] = evaluate_over_refusal(ev, name, model_path, out_dir, layout, split,
                                                           chat_template=template)
        if ev.judge == "tradeoff":  # over-refusal and the per-category rates, from the same answers
            result["tradeoff"] = evaluate_tradeoff(ev, name, model_path, out_dir, layout, split)
        result["seconds"]["safety"] = time.perf_counter() - t
    if what == "mt-bench" or (what == "all" and ev.mt_bench_questions):
        t = time.perf_counter()
        result["mt_bench"] = evaluate_mt_bench(ev, name, model_path, out_dir, client=mt_bench_client,
                                               chat_template=template)
        result["seconds"]["mt_bench"] = time.perf_counter() - t
    elif what == "all":
        log.info("MT-Bench skipped: eval.mt_bench_questions is not set")
    save_resolved(ev, model_dir / "config.yaml")  # written last with eval.json: a failed run leaves neither
    write_json(model_dir / "eval.json", result)
    write_text(model_dir / "eval.md", summary_markdown(result))
    return result


def summary_markdown(result: dict) -> str:
    lines = [f"# Evaluation: {result['model']}", "", f"Model: `{result['model_path']}`", ""]
    s = result.get("safety")
    if s:
        lo, hi = s["safety_ci"]
        lines += [f"- safety rate ({s['judge']}): **{s['safety_rate']:.3f}** (95% CI {lo:.3f}–{hi:.3f}, n={s['n']})"]
        for judge, b in (s.get("by_judge") or {}).items():
            if judge != s["judge"]:
                lines.append(f"  - with judge {judge}: {b['safety_rate']:.3f} (agreement "
                             f"{s['judge_agreement'][judge]:.3f})")
    o = result.get("over_refusal")
    if o:
        lines.append(f"- over-refusal (refusal judge): **{o['refusal_rate']:.3f}** of {o['n']} benign prompts refused "
                     f"(95% CI {o['ci95'][0]:.3f}–{o['ci95'][1]:.3f})")
    h = result.get("helpfulness")
    if h and h.get("helpfulness") is not None:
        lines.append(f"- helpfulness ({h['judge']}): **{h['helpfulness']:.3f}** (n={h['n']})")
    t = result.get("tradeoff")
    if t:
        for key, what in (("harmful_compliance", "harmful compliance"), ("over_refusal", "over-refusal (borderline)")):
            b = t[key]
            if b["rate"] is not None:
                lines.append(f"- {what}: **{b['rate']:.3f}** (95% CI {b['ci95'][0]:.3f}–{b['ci95'][1]:.3f}, "
                             f"n={b['n']})")
    m = result.get("mt_bench")
    if m:
        overall = "n/a" if m["overall"] is None else f"{m['overall']:.2f}"
        lines.append(f"- MT-Bench ({m['judge']}): **{overall}** / 10; per turn {m['per_turn']}; "
                     f"{m['n_unparsable']} unparsable judgments")
    lines += ["", "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()), ""]
    return "\n".join(lines)


def parse_model_args(items: list[str], cfg) -> list[tuple[str, str]]:
    """`NAME=PATH` or `PATH` (named after its folder); none given: the run's base policy (the layout's rule),
    named `base` (the embedded tiny model is built first when it is configured and missing)."""
    if not items:
        layout = RunLayout.from_config(cfg)
        ensure_base_model(cfg)
        return [("base", layout.policy_start)]
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            path, name = item, Path(item.rstrip("/")).name or item
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        if not name or not path:
            raise ConfigError(f"--model {item}: expected NAME=PATH or PATH")
        out.append((name, check_model_ref(path, "--model")))  # every model checked before any work
        hub_load_kwargs(path, flag="--model")  # a Hub id: cached, or reachable (a few seconds at most)
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"--model: model names must differ (got {names}); use NAME=PATH")
    return out


def cli_main(cfg, args) -> int:
    if args.what in ("judge", "mt-bench-results"):  # work on files only: agreement.py, mt_bench_results.py
        return (cli_judge if args.what == "judge" else cli_mt_bench_results)(args, cfg)
    models = parse_model_args(getattr(args, "model", []) or [], cfg)
    out_dir = Path(args.output) if getattr(args, "output", None) else RunLayout.from_config(cfg).results
    t0 = time.perf_counter()
    summaries = []
    for name, path in models:
        log.info("evaluating %s (%s): %s", name, path, args.what)
        summaries.append(evaluate_model(cfg, name, path, args.what, out_dir))
    for r in summaries:
        say(summary_markdown(r).strip() + "\n")
    say(f"results in {out_dir} ({time.perf_counter() - t0:.1f} s)")
    return 0
