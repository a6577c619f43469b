"""Score many (prompt, response) pairs with a saved reward or cost model.

Used by the Safe-MM-DPO precompute pass, the cost-model judge and distillation. Inputs are formatted exactly
as at training time (`safealign.chat.encode_pair`), sorted by length (longest first, so an out-of-memory
shows up at once) and cut into batches by a *token* budget (rows × padded length), which keeps a GPU busy
whatever the length mix. Scores come back in input order. For the cost model the score is the cost c
(c > 0 ⇔ unsafe); the harmless reward is R_S = −c.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..chat import encode_pair
from ..errors import SafeAlignError
from ..models.loading import load_score_model, load_tokenizer
from .modeling import pad_right, sequence_scores

log = logging.getLogger(__name__)


def load_scorer(path, device=None, dtype: str = "auto"):
    """Load a saved reward/cost model folder -> (model in eval mode on `device`, tokenizer)."""
    tokenizer = load_tokenizer(str(path))
    model = load_score_model(str(path), dtype=dtype, pad_token_id=tokenizer.pad_token_id)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    return model, tokenizer


def token_budget_batches(lengths: Sequence[int], max_tokens_per_batch: int) -> list[list[int]]:
    """Indices sorted by length (descending) cut into batches whose rows × longest row ≤ the budget.

    A row longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]  # descending: the first row is the widest
        if current and (len(current) + 1) * width > max_tokens_per_batch:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def score_pairs(model, tokenizer, prompts: list, responses: list[str], *, max_length: int = 512,
                max_tokens_per_batch: int = 8192, show_progress: bool = True, desc: str = "scoring") -> list[float]:
    """Scores of (prompts[i], responses[i]) in input order. No gradients; right padding; float32 results."""
    if len(prompts) != len(responses):
        raise SafeAlignError(f"score_pairs: {len(prompts)} prompts but {len(responses)} responses")
    if max_tokens_per_batch < 1:
        raise SafeAlignError(f"score_pairs: max_tokens_per_batch must be >= 1 (got {max_tokens_per_batch})")
    encoded = [encode_pair(tokenizer, p, r, max_length=max_length)["input_ids"] for p, r in zip(prompts, responses)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: list[float | None] = [None] * len(encoded)
    try:
        with torch.inference_mode(), tqdm(total=len(encoded), desc=desc, unit="pair", disable=not show_progress) as bar:
            for batch in token_budget_batches([len(e) for e in encoded], max_tokens_per_batch):
                ids, mask = pad_right([encoded[i] for i in batch], pad_id)
                out = sequence_scores(model, ids.to(device), mask.to(device)).tolist()
                for i, s in zip(batch, out):
                    scores[i] = s
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return scores  # type: ignore[return-value]
