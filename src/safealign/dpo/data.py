"""Tokenized preference pairs and the collator that stacks both responses into one batch.

Each canonical record becomes one feature holding both responses tokenized with `chat.encode_pair` (so the
response-token boundary is exact), the two labels, and, in precompute mode, the cached reference log-probs
and judge scores. The collator returns the responses stacked as [y_0 of every pair; y_1 of every pair] so
ONE policy forward serves the helpful and the safety loss. Records come from `safealign.data.records`
(an empty response is allowed: `encode_pair` still gives it a response span, the separator and EOS, whose
log-probability DPO compares like any other answer's).
"""

from __future__ import annotations

import torch

from ..chat import encode_pair
from ..errors import DataError
from ..logps import token_logps

CACHED = ("ref_logp_0", "ref_logp_1", "helpful_0", "helpful_1", "cost_0", "cost_1")
LABELS = ("unsafe_0", "unsafe_1", "harmful")  # 1 / 0, or -1 where the record does not say


def _flag(value) -> int:
    return -1 if value is None else int(bool(value))


def record_labels(rec: dict) -> dict:
    """The safety labels the constraint and SafeDPO read: unsafe_0/1 (from is_response_i_safe) and harmful
    (is_harmful_prompt), each 1, 0 or -1 (unknown)."""
    safe = [rec.get(f"is_response_{i}_safe") for i in (0, 1)]
    return {"unsafe_0": _flag(None if safe[0] is None else not safe[0]),
            "unsafe_1": _flag(None if safe[1] is None else not safe[1]), "harmful": _flag(rec.get("is_harmful_prompt"))}


def require_safety_labels(records: list[dict], path) -> None:
    """SafeDPO reorders pairs by the binary safety labels: a record without one is a DataError (file, row)."""
    for row, rec in enumerate(records, 1):
        for i in (0, 1):
            if rec.get(f"is_response_{i}_safe") is None:
                raise DataError(str(path), row, f"is_response_{i}_safe",
                                "unknown (null); algorithm safedpo needs both responses' safety labels")


def tokenize_records(records: list[dict], tokenizer, max_length: int, max_prompt_length: int,
                     cached: list[dict] | None = None, keep_text: bool = False, member_of=None) -> list[dict]:
    """One feature per record: both responses' ids + prompt lengths, labels, cached values when given, and
    with `member_of` (record -> list of bools) the record's constraint groups."""
    feats = []
    for i, rec in enumerate(records):
        e0 = encode_pair(tokenizer, rec["prompt"], rec["response_0"], max_length, max_prompt_length)
        e1 = encode_pair(tokenizer, rec["prompt"], rec["response_1"], max_length, max_prompt_length)
        f = {"input_ids_0": e0["input_ids"], "prompt_len_0": e0["prompt_len"],
             "input_ids_1": e1["input_ids"], "prompt_len_1": e1["prompt_len"],
             "better": int(rec["better_response_id"]), "safer": int(rec["safer_response_id"]),
             **record_labels(rec)}
        if member_of is not None:
            f["member"] = member_of(rec)
        if cached is not None:
            f.update({k: float(cached[i][k]) for k in CACHED})
        if keep_text:
            f.update({"prompt": rec["prompt"], "response_0": rec["response_0"], "response_1": rec["response_1"]})
        feats.append(f)
    return feats


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


def pad_sequences(seqs: list[list[int]], prompt_lens: list[int], pad_id: int):
    """Right-padded (N, L) input_ids, attention_mask and response_mask (1 on response tokens)."""
    n, length = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((n, length), pad_id, dtype=torch.long)
    attn = torch.zeros((n, length), dtype=torch.long)
    resp = torch.zeros((n, length), dtype=torch.long)
    for i, (s, p) in enumerate(zip(seqs, prompt_lens)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
        resp[i, p: len(s)] = 1
    return ids, attn, resp


class PairCollator:
    """Batch of B pairs -> input_ids/attention_mask/response_mask of shape (2B, L): rows [y_0 ...; y_1 ...]."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        seqs = [f["input_ids_0"] for f in features] + [f["input_ids_1"] for f in features]
        plens = [f["prompt_len_0"] for f in features] + [f["prompt_len_1"] for f in features]
        ids, attn, resp = pad_sequences(seqs, plens, self.pad_token_id)
        batch = {"input_ids": ids, "attention_mask": attn, "response_mask": resp,
                 "better": torch.tensor([f["better"] for f in features], dtype=torch.long),
                 "safer": torch.tensor([f["safer"] for f in features], dtype=torch.long)}
        for key in CACHED:
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.float32)
        for key in LABELS:
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        if "member" in features[0]:
            batch["member"] = torch.tensor([f["member"] for f in features], dtype=torch.bool)
        if "prompt" in features[0]:
            for key in ("prompt", "response_0", "response_1"):
                batch[key] = [f[key] for f in features]
        return batch


def sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log π(y_t | x, y_<t) over response tokens, and the number of response tokens. Both (N,).

    Only the response is summed, so the model is asked for logits from the earliest response position of the
    batch on (`logits_to_keep`, forwarded by every transformers causal LM, PEFT and DDP wrapper): the LM head,
    the log-softmax and their backward skip the prompt (docs/benchmarks.md, finding 1).
    """
    resp = response_mask[:, 1:]  # target t+1 is predicted at position t
    has = resp.any(-1)
    # earliest predicting position with a response target; none in the batch -> keep one position (sums are 0)
    first = int(resp.float().argmax(-1)[has].min()) if bool(has.any()) else max(resp.shape[1] - 1, 0)
    keep = input_ids.shape[1] - first  # positions first .. L-1; always >= 1 (0 would mean "all" to HF)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                   logits_to_keep=keep).logits
    # a model that ignores the argument returns every position: cut to the same window
    logits = logits[:, -keep:][:, :-1]  # the last position predicts nothing
    targets = input_ids[:, first + 1:]
    mask = resp[:, first:].float()
    # float32 accumulation (bf16 sums over hundreds of tokens lose the small differences DPO depends on), in
    # blocks: no (N, T, V) float32 log-softmax is kept (safealign.logps).
    logp = token_logps(logits, targets)  # (N, keep-1) float32
    return (logp * mask).sum(-1), mask.sum(-1)
