"""The one place a score model's scalar is read, so training and scoring can never disagree.

The score is the head's output at the last position whose attention mask is 1 (inputs are right-padded).
Transformers' own pooling instead picks the last token that differs from `pad_token_id`; with tokenizers
whose pad token *is* eos (Mistral base) that silently moves the read-out off the trailing eos, so we take the
head's per-token output through a forward hook and pick the position ourselves. Going through
`model.forward` (not the backbone directly) keeps PEFT, DDP and accelerate wrappers working.
"""

from __future__ import annotations

import torch


def score_head(model) -> torch.nn.Module:
    """The outermost module named `score` (for PEFT: its ModulesToSaveWrapper, which routes to the adapter)."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "score":
            return module
    raise ValueError(f"{type(model).__name__}: no `score` head found; load it with load_score_model")


def sequence_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scalar score of each right-padded row: head output at its last attended token. (B, T) -> (B,) float32."""
    captured: dict[str, torch.Tensor] = {}
    handle = score_head(model).register_forward_hook(lambda _m, _i, out: captured.__setitem__("out", out))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        handle.remove()
    per_token = captured["out"]  # (B, T, 1)
    last = attention_mask.long().sum(-1).clamp(min=1) - 1  # (B,) right padding: last attended index
    rows = torch.arange(per_token.shape[0], device=per_token.device)
    return per_token[rows, last.to(per_token.device), 0].float()  # (B,)


def pad_right(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into (input_ids, attention_mask), both (B, T_max) long tensors."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return ids, mask
