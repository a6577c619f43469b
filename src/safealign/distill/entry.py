"""`run_distill` and `safealign distill`: the four steps in order, and how the student compares.

1. prompts and 2. data (`distill.data`): the teacher's filtered answers; 3. the student (`distill.student`);
4. efficiency of base, teacher and student on this machine (`evaluation.efficiency`) and — from the command
line — the same safety/helpfulness evaluation as the other models, through the public
`evaluation.run.evaluate_model`. Every path comes from the run layout.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..data.records import read_preference_records
from ..errors import SafeAlignError
from ..evaluation.efficiency import measure_models
from ..evaluation.run import evaluate_model
from ..fileio import write_json
from ..layout import RunLayout
from .data import build_distill_data, teacher_path
from .filters import sample_prompts
from .student import student_config, train_student

log = logging.getLogger(__name__)


def _require(path: str | Path, what: str, hint: str) -> None:
    if not (Path(path) / "config.json").is_file():
        raise SafeAlignError(f"{path}: {what} not found; {hint}")


def teacher_name(cfg) -> str:
    """The teacher's results folder: `distill.teacher_name`, else the main DPO algorithm (as the pipeline)."""
    return cfg.section("distill").teacher_name or str(cfg.section("dpo").algorithm)


def _is_model(ref: str) -> bool:
    """A local folder holding a model, or something that reads as a Hub id (the real recipe's base)."""
    p = Path(ref)
    return (p / "config.json").is_file() or (not p.exists() and not p.is_absolute() and ref.count("/") == 1)


def measure(cfg, layout: RunLayout, teacher: Path, student: Path) -> dict:
    """Efficiency of base, teacher and student on prompts of the test split (train when there is none)."""
    d = cfg.section("distill")
    source = layout.split("test")
    if not source.is_file():
        source = layout.split("train")
    prompts = [p["prompt"] for p in sample_prompts(read_preference_records(source), d.efficiency_prompts, 0.5,
                                                   d.seed)]
    models = {"base": layout.policy_start, teacher_name(cfg): str(teacher), "distilled": str(student)}
    models = {k: v for k, v in models.items() if _is_model(v)}
    return measure_models(models, prompts, layout.results, max_new_tokens=d.efficiency_max_new_tokens,
                          batch_size=d.efficiency_batch_size, repeats=d.efficiency_repeats)


def evaluate_student(cfg, layout: RunLayout, teacher: Path, student: Path) -> dict:
    """The same safety/helpfulness evaluation for the student, and for base and teacher where their results
    are missing (so `results/` holds all three side by side). Returns {name: safety rate, helpfulness}."""
    what = cfg.section("pipeline").evaluate
    todo = {"distilled": str(student)}
    for name, path in (("base", layout.policy_start), (teacher_name(cfg), str(teacher))):
        if not (layout.result(name) / "safety.json").is_file():
            todo[name] = path
    out = {}
    for name, path in todo.items():
        result = evaluate_model(cfg, name, path, what, layout.results)
        out[name] = {"safety_rate": (result.get("safety") or {}).get("safety_rate"),
                     "helpfulness": (result.get("helpfulness") or {}).get("helpfulness")}
    return out


def run_distill(cfg, output_dir: str | Path | None = None, resume=None, evaluate: bool = False) -> dict:
    """Distil the aligned teacher into the student at `output_dir` (default: the layout's `models/distilled`).

    Inside the pipeline the student is evaluated by its own `evaluate_distilled` stage; `evaluate=True`
    (the `safealign distill` command) evaluates it here. Returns a summary (also `<run>/distill/summary.json`).
    """
    layout = RunLayout.from_config(cfg)
    teacher = teacher_path(cfg, layout)
    student = Path(output_dir or layout.distilled)
    student_config(cfg)  # a bad `distill.student` fails now, not after the teacher has answered
    _require(teacher, "teacher model", "train it with `safealign train-dpo` or set distill.teacher_path")
    _require(layout.judge("helpful"), "helpful reward model",
             "train it with `safealign train-rm --dimension helpful` or set reward.helpful_rm_path")
    _require(layout.judge("harmless"), "cost model",
             "train it with `safealign train-rm --dimension harmless` or set reward.harmless_rm_path")
    samples, report = build_distill_data(cfg, layout)
    train_metrics = train_student(cfg, layout, teacher, samples, student, resume=resume)
    efficiency = measure(cfg, layout, teacher, student)
    summary = {
        "teacher": str(teacher), "student": str(student),
        "filter": {k: report[k] for k in ("filters", "all", "harmful_prompts", "benign_prompts")},
        "train": {k: v for k, v in train_metrics.items() if k != "log_history"},
        "efficiency": efficiency,
        "efficiency_table": str(layout.results / "efficiency.md"),
    }
    if evaluate:
        summary["evaluation"] = evaluate_student(cfg, layout, teacher, student)
    write_json(layout.distill_work / "summary.json", summary)
    return summary


def cli_main(cfg, args) -> int:
    summary = run_distill(cfg, output_dir=getattr(args, "output", None), evaluate=True)
    t = summary["train"]
    f = summary["filter"]["all"]
    print(f"distill: kept {f['kept']}/{f['samples']} teacher answers; student val loss "
          f"{t.get('initial_val_loss'):.4f} -> {t.get('val_loss'):.4f}; saved {summary['student']}")
    for name, r in (summary.get("evaluation") or {}).items():
        print(f"  {name}: safety rate {r['safety_rate']}, helpfulness {r['helpfulness']}")
    print(Path(summary["efficiency_table"]).read_text(encoding="utf-8"))
    return 0
