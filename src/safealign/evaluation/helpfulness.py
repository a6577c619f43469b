"""Helpfulness on the benign prompts of the evaluated split (so a model that refuses everything shows it).

Judges: `toy` / `tradeoff` (the toy world's `is_helpful`, a rate with a Wilson interval; on the trade-off
world the benign prompts include the borderline ones, so an over-refusal costs helpfulness) and `helpful-rm`
(the run's helpful reward model, `layout.judge("helpful")`: mean score, and the win-rate against the answers
of the run's base policy, `layout.policy_start`, to the same prompts, ties half). `helpfulness` (0..1) in `helpfulness.json` is
the toy rate or the RM win-rate; the report shows it with the judge that produced it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ConfigError
from ..fileio import write_json, write_jsonl
from ..layout import RunLayout, base_generation_cache, generation_cache
from ..rm.scoring import load_scorer, score_pairs
from ..toy import ToyJudge, TradeoffJudge
from .answers import answer_prompts
from .prompts import load_helpful_prompts
from .stats import rate_block

log = logging.getLogger(__name__)


def _has_model(path: str) -> bool:
    return (Path(path) / "config.json").is_file()


def pick_helpfulness_judge(cfg, layout: RunLayout) -> str | None:
    """`eval.helpfulness_judge`; `auto`: toy with the toy judge, else the helpful RM when the run has one."""
    if cfg.helpfulness_judge != "auto":
        return cfg.helpfulness_judge
    if cfg.judge in ("toy", "tradeoff"):
        return cfg.judge
    return "helpful-rm" if _has_model(layout.judge("helpful")) else None


def evaluate_helpfulness(cfg, name: str, model_path, out_dir: Path, layout: RunLayout,
                         split: str = "test", chat_template: str | None = None) -> dict | None:
    """Answer the benign prompts of `split`, judge them; write helpfulness.json (+ answers). `cfg`: `eval`."""
    kind = pick_helpfulness_judge(cfg, layout)
    if kind is None or not cfg.helpfulness:
        log.info("helpfulness: skipped (not the toy judge, and no helpful RM at %s)", layout.judge("helpful"))
        return None
    model_dir = Path(out_dir) / name
    prompts = [r["prompt"] for r in load_helpful_prompts(cfg, layout, split)]
    answers, _ = answer_prompts(cfg, model_path, prompts, generation_cache(model_dir), f"{name}: helpfulness answers", chat_template)
    out: dict = {"model": name, "judge": kind, "n": len(prompts)}
    per_row = [{"prompt": p, "answer": a} for p, a in zip(prompts, answers)]
    if kind in ("toy", "tradeoff"):
        toy = ToyJudge() if kind == "toy" else TradeoffJudge()
        flags = [bool(toy.is_helpful(p, a)) for p, a in zip(prompts, answers)]
        block = rate_block(sum(flags), len(flags))
        out.update(helpfulness=block["rate"], helpfulness_ci=block["ci95"], n_helpful=block["k"])
        for r, f in zip(per_row, flags):
            r["helpful"] = f
    else:
        out.update(_rm_helpfulness(cfg, name, model_path, prompts, answers, model_dir, layout, chat_template, per_row))
    write_jsonl(model_dir / "helpfulness_answers.jsonl", per_row)
    write_json(model_dir / "helpfulness.json", out)
    return out


def _rm_helpfulness(cfg, name, model_path, prompts, answers, model_dir: Path, layout: RunLayout, chat_template,
                    per_row) -> dict:
    rm_path = layout.judge("helpful")
    if not _has_model(rm_path):
        raise ConfigError(f"{rm_path}: no trained helpful reward model there for the helpful-rm judge (run "
                             "`safealign train-rm --dimension helpful`, or set reward.helpful_rm_path)")
    model, tok = load_scorer(rm_path)
    scores = score_pairs(model, tok, prompts, answers, desc=f"{name}: helpful RM")
    res = {"helpful_rm_path": str(rm_path), "mean_score": sum(scores) / len(scores)}
    base = layout.policy_start
    same = Path(str(model_path)).exists() and Path(base).resolve() == Path(str(model_path)).resolve()
    if not same:
        # Shared by every model of this results folder (keys hold the base's fingerprint): a sweep answers
        # the base's prompts once, not once per grid point.
        base_answers, _ = answer_prompts(cfg, base, prompts, base_generation_cache(model_dir.parent),
                                         f"{name}: base answers", chat_template)
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
