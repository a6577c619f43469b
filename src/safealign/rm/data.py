"""Reward-model datasets and the collator.

Each preference record (docs/DESIGN.md) gives one pair: the helpful RM ranks response_{better} over the
other; the cost model ranks response_{safer} as the cheaper one and learns the sign of each response's cost
from `is_response_{0,1}_safe` (null = unknown, left out of the sign term). Single-response safety rows
(`safety_train.jsonl`, BeaverTails) add sign-only examples to the cost model.

Records are read by `safealign.data.records` (the rules every stage shares: an empty response is allowed, a
model may say nothing). Items are tokenized once, up front, with `safealign.chat.encode_pair` — the same call
`score_pairs` uses.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..chat import encode_pair
from ..data.records import read_preference_records, read_safety_rows
from .modeling import pad_right

UNKNOWN = -1  # is_unsafe label of a response whose safety is not known


def _unsafe_label(is_safe: bool | None) -> int:
    return UNKNOWN if is_safe is None else int(not is_safe)


def pair_examples(path: str | Path, dimension: str) -> list[dict]:
    """Preference records -> {prompt, chosen, rejected, chosen_unsafe, rejected_unsafe} (chosen = preferred)."""
    key = "better_response_id" if dimension == "helpful" else "safer_response_id"
    examples = []
    for rec in read_preference_records(path):
        pick = rec[key]
        responses = [rec["response_0"], rec["response_1"]]
        unsafe = [_unsafe_label(rec.get(f"is_response_{i}_safe")) for i in (0, 1)]
        examples.append({"prompt": rec["prompt"], "chosen": responses[pick], "rejected": responses[1 - pick],
                         "chosen_unsafe": unsafe[pick], "rejected_unsafe": unsafe[1 - pick]})
    return examples


def single_examples(path: str | Path) -> list[dict]:
    """Single-response safety rows {prompt, response, is_safe} -> {prompt, response, unsafe}."""
    return [{"prompt": row["prompt"], "response": row["response"], "unsafe": _unsafe_label(row["is_safe"])}
            for row in read_safety_rows(path)]


class RewardDataset(torch.utils.data.Dataset):
    """Tokenized pair items {"kind": "pair", chosen_ids, rejected_ids, chosen_unsafe, rejected_unsafe} and
    (cost model only) single items {"kind": "single", ids, unsafe}."""

    def __init__(self, tokenizer, pairs: list[dict], singles: list[dict] | None = None, max_length: int = 512,
                 desc: str = "tokenizing"):
        self.items: list[dict] = []
        for ex in tqdm(pairs, desc=f"{desc} pairs", unit="pair", disable=len(pairs) < 2000):
            self.items.append({
                "kind": "pair",
                "chosen_ids": encode_pair(tokenizer, ex["prompt"], ex["chosen"], max_length)["input_ids"],
                "rejected_ids": encode_pair(tokenizer, ex["prompt"], ex["rejected"], max_length)["input_ids"],
                "chosen_unsafe": ex["chosen_unsafe"], "rejected_unsafe": ex["rejected_unsafe"]})
        for ex in tqdm(singles or [], desc=f"{desc} single responses", unit="row", disable=len(singles or []) < 2000):
            self.items.append({"kind": "single", "ids": encode_pair(tokenizer, ex["prompt"], ex["response"],
                                                                     max_length)["input_ids"],
                               "unsafe": ex["unsafe"]})
        self.num_pairs = len(pairs)
        self.num_singles = len(self.items) - self.num_pairs

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class RewardCollator:
    """Batch = chosen rows, then rejected rows, then single rows, right-padded into one tensor so the
    model runs one forward. Returns input_ids, attention_mask (N, T), is_unsafe (N,) with −1 = unknown,
    and num_pairs (P: rows [0, P) are chosen, [P, 2P) rejected)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[dict]) -> dict:
        pairs = [it for it in items if it["kind"] == "pair"]
        singles = [it for it in items if it["kind"] == "single"]
        seqs = ([p["chosen_ids"] for p in pairs] + [p["rejected_ids"] for p in pairs] + [s["ids"] for s in singles])
        labels = ([p["chosen_unsafe"] for p in pairs] + [p["rejected_unsafe"] for p in pairs]
                  + [s["unsafe"] for s in singles])
        input_ids, attention_mask = pad_right(seqs, self.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "is_unsafe": torch.tensor(labels, dtype=torch.long), "num_pairs": len(pairs)}
