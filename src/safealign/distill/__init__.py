"""Knowledge distillation: the aligned teacher's filtered answers teach a smaller student (`safealign distill`).

Sequence-level distillation in four steps, each resumable, split by job:
`config` (section `distill`; the student as overrides of the `model` section), `filters` (pure selection:
prompt sampling, cost and helpful filters, the split by prompt), `data` (teacher answers, scores, filtered
set), `student` (built and fine-tuned with the shared SFT routine), `entry` (the stage, efficiency and the
command). Paths come from `safealign.layout.RunLayout`.
"""

from .config import STUDENT_DEFAULTS, DistillConfig
from .data import build_distill_data
from .entry import cli_main, run_distill

__all__ = ["DistillConfig", "STUDENT_DEFAULTS", "build_distill_data", "run_distill", "cli_main"]
