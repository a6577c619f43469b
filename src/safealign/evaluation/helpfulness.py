"""Helpfulness on the benign prompts of the test split (so a model that refuses everything shows it).

Judges: `toy` (the toy world's `is_helpful`, a rate with a Wilson interval) and `helpful-rm` (the helpful
reward model: mean score, and the win-rate against the base model's answers to the same prompts, ties half).
`helpfulness` (0..1) in `helpfulness.json` is the toy rate or the RM win-rate; the report shows it with the
judge that produced it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import SafeAlignError
from ..fileio import write_json, write_jsonl
from .safety import test_split_prompts
from .stats import rate_block

log = logging.getLogger(__name__)


def pick_helpfulness_judge(cfg) -> str | None:
    if cfg.helpfulness_judge != "auto":
        return cfg.helpfulness_judge
    if cfg.judge == "toy":
        return "toy"
    return "helpful-rm" if cfg.helpful_rm_path else None


def evaluate_helpfulness(cfg, name: str, model_path, out_dir: Path, run_dir: Path) -> dict | None:
    from ..generation import generate

    kind = pick_helpfulness_judge(cfg)
    if kind is None or not cfg.helpfulness:
        log.info("helpfulness: skipped (no toy judge and no eval.helpful_rm_path)")
        return None
    model_dir = Path(out_dir) / name
    rows = test_split_prompts(run_dir, harmful=False)
    if cfg.max_helpful_prompts:
        rows = rows[: cfg.max_helpful_prompts]
    if not rows:
        raise SafeAlignError(f"{Path(run_dir) / 'data' / 'test.jsonl'}: no benign prompts for helpfulness")
    prompts = [r["prompt"] for r in rows]
    gen = dict(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed,
               batch_size=cfg.batch_size, backend=cfg.backend)
    answers = generate(model_path, prompts, cache_path=model_dir / "cache" / "generation.jsonl",
                       desc=f"{name}: helpfulness answers", **gen)
    out: dict = {"model": name, "judge": kind, "n": len(prompts)}
    per_row = [{"prompt": p, "answer": a} for p, a in zip(prompts, answers)]
    if kind == "toy":
        from ..data.toy_world import ToyJudge

        toy = ToyJudge()
        flags = [bool(toy.is_helpful(p, a)) for p, a in zip(prompts, answers)]
        block = rate_block(sum(flags), len(flags))
        out.update(helpfulness=block["rate"], helpfulness_ci=block["ci95"], n_helpful=block["k"])
        for r, f in zip(per_row, flags):
            r["helpful"] = f
    else:
        out.update(_rm_helpfulness(cfg, name, model_path, prompts, answers, model_dir, run_dir, gen, per_row))
    write_jsonl(model_dir / "helpfulness_answers.jsonl", per_row)
    write_json(model_dir / "helpfulness.json", out)
    return out


def _rm_helpfulness(cfg, name, model_path, prompts, answers, model_dir, run_dir, gen, per_row) -> dict:
    from ..generation import generate
    from ..rm.scoring import load_scorer, score_pairs

    rm_path = cfg.helpful_rm_path
    if not rm_path or not (Path(rm_path) / "config.json").is_file():
        raise SafeAlignError(f"eval.helpful_rm_path: {rm_path}: no trained helpful reward model there")
    model, tok = load_scorer(rm_path)
    scores = score_pairs(model, tok, prompts, answers, desc=f"{name}: helpful RM")
    res = {"helpful_rm_path": str(rm_path), "mean_score": sum(scores) / len(scores)}
    base = cfg.helpful_base_model or str(Path(run_dir) / "models" / "base")
    same = Path(str(model_path)).exists() and Path(base).resolve() == Path(str(model_path)).resolve()
    if not same:
        # Shared by every model of this results folder (keys hold the base's fingerprint): a sweep answers
        # the base's prompts once, not once per grid point.
        base_answers = generate(base, prompts, cache_path=model_dir.parent / ".cache" / "base_generation.jsonl",
                                desc=f"{name}: base answers", **gen)
        base_scores = score_pairs(model, tok, prompts, base_answers, desc="base: helpful RM")
        wins = sum(1.0 if s > b else 0.5 if s == b else 0.0 for s, b in zip(scores, base_scores))
        res.update(base_model=str(base), base_mean_score=sum(base_scores) / len(base_scores),
                   win_rate=wins / len(scores), helpfulness=wins / len(scores))
        for r, s, b in zip(per_row, scores, base_scores):
            r.update(score=s, base_score=b)
    else:  # the base itself: a tie with itself by definition
        res.update(base_model=str(base), win_rate=0.5, helpfulness=0.5)
        for r, s in zip(per_row, scores):
            r["score"] = s
    return res
