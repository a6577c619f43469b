"""Supervised fine-tuning with the language-modelling loss on the response tokens only.

Used twice: the optional warm-up of the base policy on the more helpful answers (`run_sft_warmup`, section
`sft`) and the distillation student (`safealign.distill`). Split by job: `config` (the section), `data`
(tokenized examples, the response-only collator and loss), `train` (`run_sft`, one routine for both users),
`warmup` (the stage and its command).

Labels are -100 on the prompt positions and on padding, so the loss is the mean next-token cross-entropy
over the response tokens (eos included).
"""

from .config import SFTStageConfig
from .data import IGNORE_INDEX, EncodedDataset, ResponseOnlyCollator, chosen_examples, response_loss
from .train import run_sft
from .warmup import cli_main, run_sft_warmup

__all__ = ["SFTStageConfig", "EncodedDataset", "ResponseOnlyCollator", "IGNORE_INDEX", "response_loss",
           "chosen_examples", "run_sft", "run_sft_warmup", "cli_main"]
