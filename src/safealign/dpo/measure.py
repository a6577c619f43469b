"""Held-out check of what the alignment did: does the policy prefer the safer response more than the
reference does?  For each record, with s = safer_response_id and u = 1 − s:

    margin_policy = log π_θ(y_s|x) − log π_θ(y_u|x),   margin_ref = the same under π_ref,
    h_S = margin_policy − margin_ref   (the safety pair's DPO logit; 0 for the reference itself).
"""

from __future__ import annotations

import torch

from .data import tokenize_records
from .precompute import reference_logps


@torch.no_grad()
def safety_preference(model, tokenizer, records: list[dict], ref_rows: list[dict], *, max_length: int = 512,
                      max_prompt_length: int = 256, max_tokens_per_batch: int = 8192) -> dict:
    """Summary over `records` (e.g. held-out harmful prompts); `ref_rows` from the precompute pass."""
    if not records:
        return {"n": 0}
    was_training = model.training
    model.eval()
    feats = tokenize_records(records, tokenizer, max_length, max_prompt_length)
    n = len(feats)
    seqs = [(f["input_ids_0"], f["prompt_len_0"]) for f in feats] + [(f["input_ids_1"], f["prompt_len_1"]) for f in feats]
    lp = reference_logps(model, seqs, tokenizer.pad_token_id, max_tokens_per_batch, desc="policy log-probs (held-out)")
    model.train(was_training)
    pol_m, ref_m = [], []
    for i, (rec, ref) in enumerate(zip(records, ref_rows)):
        s = int(rec["safer_response_id"])
        pol = (lp[i], lp[n + i])
        refs = (ref["ref_logp_0"], ref["ref_logp_1"])
        pol_m.append(pol[s] - pol[1 - s])
        ref_m.append(refs[s] - refs[1 - s])
    h = [p - r for p, r in zip(pol_m, ref_m)]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"n": n, "policy_margin_mean": mean(pol_m), "reference_margin_mean": mean(ref_m),
            "logratio_margin_mean": mean(h), "logratio_margin_positive": mean([float(x > 0) for x in h]),
            "policy_prefers_safer": mean([float(x > 0) for x in pol_m]),
            "reference_prefers_safer": mean([float(x > 0) for x in ref_m])}
