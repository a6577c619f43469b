"""Reward-model datasets and the collator.

Each preference record (docs/DESIGN.md) gives one pair: the helpful RM ranks response_{better} over the
other; the cost model ranks response_{safer} as the cheaper one and learns the sign of each response's cost
from `is_response_{0,1}_safe` (null = unknown, left out of the sign term). Single-response safety rows
(`safety_train.jsonl`, BeaverTails) add sign-only examples to the cost model.

Items are tokenized once, up front, with `safealign.chat.encode_pair` — the same call `score_pairs` uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..chat import encode_pair
from ..errors import DataError
from .modeling import pad_right

DIMENSIONS = ("helpful", "harmless")
UNKNOWN = -1  # is_unsafe label of a response whose safety is not known


def read_records(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-empty line; a malformed line raises DataError naming it."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(str(path), lineno, None, f"invalid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(str(path), lineno, None, "expected a JSON object")
            out.append((lineno, obj))
    return out


def _unsafe_label(value, path, lineno, field) -> int:
    if value is None:
        return UNKNOWN
    if not isinstance(value, bool):
        raise DataError(str(path), lineno, field, f"expected true, false or null (got {value!r})")
    return 0 if value else 1


def _text(obj, field, path, lineno):
    value = obj.get(field)
    if field == "prompt":  # a string or a list of chat messages, never empty
        ok = isinstance(value, list) and bool(value) or isinstance(value, str) and bool(value.strip())
    else:  # a response may be empty (the model said nothing) but must be a string
        ok = isinstance(value, str)
    if not ok:
        raise DataError(str(path), lineno, field, f"expected a non-empty string (got {value!r:.60})"
                        if field == "prompt" else f"expected a string (got {value!r:.60})")
    return value


def pair_examples(path: str | Path, dimension: str) -> list[dict]:
    """Preference records -> {prompt, chosen, rejected, chosen_unsafe, rejected_unsafe} (chosen = preferred)."""
    key = "better_response_id" if dimension == "helpful" else "safer_response_id"
    examples = []
    for lineno, obj in read_records(path):
        prompt = _text(obj, "prompt", path, lineno)
        responses = [_text(obj, f"response_{i}", path, lineno) for i in (0, 1)]
        pick = obj.get(key)
        if pick not in (0, 1) or isinstance(pick, bool):
            raise DataError(str(path), lineno, key, f"expected 0 or 1 (got {pick!r})")
        unsafe = [_unsafe_label(obj.get(f"is_response_{i}_safe"), path, lineno, f"is_response_{i}_safe")
                  for i in (0, 1)]
        examples.append({"prompt": prompt, "chosen": responses[pick], "rejected": responses[1 - pick],
                         "chosen_unsafe": unsafe[pick], "rejected_unsafe": unsafe[1 - pick]})
    return examples


def single_examples(path: str | Path) -> list[dict]:
    """Single-response safety rows {prompt, response, is_safe} -> {prompt, response, unsafe}; null is_safe skipped."""
    examples = []
    for lineno, obj in read_records(path):
        prompt = _text(obj, "prompt", path, lineno)
        response = _text(obj, "response", path, lineno)
        label = _unsafe_label(obj.get("is_safe"), path, lineno, "is_safe")
        if label != UNKNOWN:
            examples.append({"prompt": prompt, "response": response, "unsafe": label})
    return examples


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
