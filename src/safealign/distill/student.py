"""Step 3 of distillation: the student. Its model config is the `model` section with `distill.student`
applied (`DistillConfig.model_config`); a tiny student is built once on the teacher's tokenizer, seeded, and
every student is fine-tuned on the kept teacher answers by the shared SFT routine (`sft.run_sft`), with the
stage's checkpoints, reporters and TensorBoard folder from the run layout.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_path
from ..layout import RunLayout
from ..models.loading import load_tokenizer
from ..models.tiny import build_tiny_model
from ..sft import run_sft
from .filters import split_by_prompt


def student_config(cfg):
    """The student's ModelConfig: the `model` section with `distill.student` applied."""
    return cfg.section("distill").model_config(cfg.section("model"))


def build_student(cfg, layout: RunLayout, teacher: Path) -> str:
    """The student's starting point: a Hub id / path as configured, or the tiny student built once (seeded)
    in `<checkpoints>/distill/student_init`."""
    student = student_config(cfg)
    if not student.is_tiny:
        return student.name_or_path
    init = layout.checkpoints("distill") / "student_init"
    if (init / "config.json").is_file():
        return str(init)
    tok = load_tokenizer(str(teacher), chat_template=student.chat_template)
    model = build_tiny_model(tok, architecture=student.tiny_architecture, hidden_size=student.tiny_hidden_size,
                             num_layers=student.tiny_num_layers, num_heads=student.tiny_num_heads,
                             intermediate_size=student.tiny_intermediate_size,
                             max_position_embeddings=student.tiny_max_position_embeddings,
                             seed=cfg.section("distill").seed)
    with atomic_path(init) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return str(init)


def train_student(cfg, layout: RunLayout, teacher: Path, samples: list[dict], output_dir: Path,
                  resume=None) -> dict:
    """Fine-tune the student on the kept answers (train/val split by prompt); returns `run_sft`'s metrics."""
    d = cfg.section("distill")
    kept = [s for s in samples if s["kept"]]
    if not kept:
        raise ConfigError(f"{layout.distill_work / 'filter_report.md'}: no teacher answer passed the filters; "
                             "loosen distill.max_cost / distill.helpful_quantile")
    train, val = split_by_prompt(kept, d.val_fraction, d.seed)
    start = build_student(cfg, layout, teacher)
    # The stage's own seed, not run.seed (see DistillConfig).
    args, callbacks = d.fit_to_run(layout, "distill", cfg, seed=d.seed)
    return run_sft(train, val, start, output_dir, args, model_cfg=student_config(cfg), resume=resume,
                   callbacks=callbacks, config_to_save=cfg, steps_key="distill.num_train_epochs",
                   card={"method": "distill", "model_name": "distilled", "data_dir": layout.data_dir})
