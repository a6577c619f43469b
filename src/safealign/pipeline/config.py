"""Config section `pipeline`: what the pipeline runs besides the main Safe-MM-DPO stage, and how."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..dpo.config import ALGORITHMS
from ..errors import ConfigError


@dataclasses.dataclass
class PipelineConfig:
    """Section `pipeline`.

    ablations: extra `dpo.algorithm` values trained by the same pipeline (stage `dpo_<algo>`, model
               `models/aligned_<algo>`, evaluated and reported as `<algo>`) with the same data, RMs and
               precompute cache. An ablation equal to `dpo.algorithm` is dropped (it is the main run).
    evaluate:  which evaluation every model gets (`safety`, `mt-bench` or `all`; see section `eval`).
    resume:    an interrupted training stage continues from its latest checkpoint (else it starts over).
    launcher:  multi-GPU: the reward-model and DPO stages run as `<launcher> -m safealign.cli train-...` in a
               child process, e.g. "accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml";
               None: in-process.
    """

    ablations: list[str] = dataclasses.field(default_factory=list)
    evaluate: Literal["safety", "mt-bench", "all"] = "safety"
    resume: bool = True
    launcher: str | None = None

    def __post_init__(self):
        for i, algo in enumerate(self.ablations):
            if algo not in ALGORITHMS:
                raise ConfigError(f"ablations[{i}]: must be one of {', '.join(ALGORITHMS)} (got {algo!r})")
        if len(set(self.ablations)) != len(self.ablations):
            raise ConfigError(f"ablations: listed twice: {self.ablations}")
