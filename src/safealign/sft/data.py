"""Response-only SFT data: (prompt, response) examples tokenized with `chat.encode_pair`, batched with labels
that are -100 on the prompt and on padding, and the loss those labels give.

Every example goes through `encode_pair`, the same chat format the reward models and DPO read, so a model
trained here answers in exactly the format the later stages score. (TRL's `SFTTrainer` tokenizes
prompt/completion data itself, with its own template handling and truncation: not byte-identical.)
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..chat import encode_pair
from ..errors import DataError

IGNORE_INDEX = -100


def chosen_examples(records: Sequence[dict]) -> list[dict]:
    """(prompt, more helpful response) of each canonical record (validated by `data.records`)."""
    return [{"prompt": r["prompt"], "response": r[f"response_{r['better_response_id']}"]} for r in records]


class EncodedDataset:
    """(prompt, response) examples tokenized once with `encode_pair`; items are {input_ids, prompt_len}."""

    def __init__(self, examples: Sequence[dict], tokenizer, max_length: int = 512,
                 max_prompt_length: int | None = None, source: str = "examples"):
        self.items = []
        for i, ex in enumerate(examples):
            for field in ("prompt", "response"):
                value = ex.get(field) if isinstance(ex, dict) else None
                if not isinstance(value, str) or (field == "prompt" and not value.strip()):
                    raise DataError(source, i + 1, field, "missing or not a non-empty string")
            self.items.append(encode_pair(tokenizer, ex["prompt"], ex["response"], max_length=max_length,
                                          max_prompt_length=max_prompt_length))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    @property
    def response_tokens(self) -> int:
        return sum(len(x["input_ids"]) - x["prompt_len"] for x in self.items)


class ResponseOnlyCollator:
    """Right-pads a batch; labels = input_ids on the response positions, -100 on prompt and padding."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict:
        width = max(len(it["input_ids"]) for it in items)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for row, it in enumerate(items):
            seq = torch.tensor(it["input_ids"], dtype=torch.long)
            n, p = len(seq), it["prompt_len"]
            ids[row, :n] = seq
            mask[row, :n] = 1
            labels[row, p:n] = seq[p:]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions whose label is not -100.

    logits (B, T, V), labels (B, T) -> scalar: mean over {(b, t): labels[b, t+1] != -100} of
    -log softmax(logits[b, t])[labels[b, t+1]] — what a causal LM's own loss computes from these labels.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)
