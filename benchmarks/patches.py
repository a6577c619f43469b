"""Proposed speed fixes, applied by monkeypatching so their before/after can be measured in the same harness
before they land in the owning module.

`response_only_sequence_logps`: the fix proposed for `safealign.dpo.data.sequence_logps`. The original
projects every position through the LM head and takes a float32 log-softmax over the whole vocabulary, prompt
positions included, though only response tokens are summed. This version asks the model for the logits of the
positions from the earliest response token on (`logits_to_keep`, which every transformers causal LM and PEFT
wrapper forwards), so the LM head, the log-softmax and their backward skip the prompt. Same values (tested in
tests/test_benchmarks_smoke.py), less time and memory; TRL does the same with its fused LM head.
"""

from __future__ import annotations

import torch


def response_only_sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                 response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ log π(y_t | x, y_<t) over response tokens and their count, both (N,): logits only where needed."""
    resp = response_mask[:, 1:]  # target t+1 is predicted at position t
    has = resp.any(-1)
    first = int(resp.float().argmax(-1)[has].min()) if bool(has.any()) else resp.shape[1] - 1
    keep = input_ids.shape[1] - first  # positions first .. L-1 (the last one predicts nothing and is dropped)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                   logits_to_keep=keep).logits[:, :-1]
    targets = input_ids[:, first + 1:]
    mask = resp[:, first:].float()
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1), mask.sum(-1)


def apply_response_only_logits() -> None:
    """Route SafeMMDPOTrainer (and the precompute pass) through `response_only_sequence_logps`."""
    from safealign.dpo import data, precompute, trainer

    for mod in (data, precompute, trainer):
        if hasattr(mod, "sequence_logps"):
            mod.sequence_logps = response_only_sequence_logps
