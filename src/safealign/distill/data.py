"""Step 2 of distillation: the teacher answers the sampled prompts, both judges score every answer, the
filters choose what the student learns from. Written to `<run>/distill/` (`data.jsonl`, `filter_report.*`).

The teacher's answers go through the shared generation layer with its on-disk cache
(`layout.cache("distill")`), so a rerun or a resumed stage generates nothing twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import generation
from ..data.records import read_preference_records
from ..fileio import write_json, write_jsonl, write_text
from ..layout import RunLayout
from ..rm.scoring import load_scorer, score_pairs
from .filters import apply_filters, filter_report_markdown, sample_prompts

log = logging.getLogger(__name__)


def teacher_path(cfg, layout: RunLayout) -> Path:
    """`distill.teacher_path` when set, else the run's aligned model."""
    return Path(cfg.section("distill").teacher_path or layout.aligned())


def build_distill_data(cfg, layout: RunLayout | None = None) -> tuple[list[dict], dict]:
    """Sample, generate, score and filter; write data.jsonl and the filter report. Returns (samples, report)."""
    layout = layout or RunLayout.from_config(cfg)
    d = cfg.section("distill")
    teacher = teacher_path(cfg, layout)
    prompts = sample_prompts(read_preference_records(layout.split("train")), d.num_prompts, d.harmful_fraction,
                             d.seed)
    texts = [p["prompt"] for p in prompts]
    log.info("distill: %d prompts (%d harmful) x %d teacher samples", len(prompts),
             sum(p["is_harmful_prompt"] for p in prompts), d.samples_per_prompt)

    samples: list[dict] = []
    for k in range(d.samples_per_prompt):
        answers = generation.generate(
            str(teacher), texts, max_new_tokens=d.max_new_tokens, temperature=d.temperature, top_p=d.top_p,
            seed=d.seed + 1000 * k, batch_size=d.generation_batch_size, backend=d.generation_backend,
            cache_path=layout.cache("distill") / "teacher_samples.jsonl",
            desc=f"teacher answers {k + 1}/{d.samples_per_prompt}")
        for p, answer in zip(prompts, answers):
            samples.append({"prompt": p["prompt"], "response": answer, "sample": k,
                            "is_harmful_prompt": p["is_harmful_prompt"]})
    generation.release()

    for field, dim in (("helpful_score", "helpful"), ("cost", "harmless")):
        model, tok = load_scorer(layout.judge(dim))
        scores = score_pairs(model, tok, [s["prompt"] for s in samples], [s["response"] for s in samples],
                             max_length=d.max_length, max_tokens_per_batch=d.score_max_tokens_per_batch,
                             desc=f"scoring ({field})")
        for s, v in zip(samples, scores):
            s[field] = float(v)
        del model
        generation.release()  # gc + free CUDA memory before the next model loads

    report = apply_filters(samples, d.max_cost, d.helpful_quantile, d.helpful_scope)
    report["teacher"] = str(teacher)
    report["samples_per_prompt"] = d.samples_per_prompt
    report["temperature"] = d.temperature
    work = layout.distill_work
    write_jsonl(work / "data.jsonl", samples)
    write_json(work / "filter_report.json", report)
    write_text(work / "filter_report.md", filter_report_markdown(report))
    log.info("distill: kept %d of %d teacher answers", report["all"]["kept"], report["all"]["samples"])
    return samples, report
