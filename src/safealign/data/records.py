"""The one reader of canonical records (`data/{train,val,test}.jsonl`, `safety_*.jsonl`): one set of rules.

Every stage that reads prepared data calls `read_preference_records` or `read_safety_rows`, so a file is
accepted or rejected the same way everywhere. The rules (docs/DESIGN.md, "Canonical preference record"):
- each non-empty line is a JSON object; a bad line is a `DataError` naming file, line and field;
- `prompt` is a non-empty string; `response_0`/`response_1` are strings, possibly empty (a model may say
  nothing, and the reward models must see that) — `nonempty_responses=True` for stages that cannot train on
  an empty answer (DPO: an empty response has no token to take a log-prob of besides EOS, which is allowed,
  so DPO accepts them too; the flag exists for callers that need text);
- `better_response_id`/`safer_response_id` are 0 or 1 (not booleans);
- `is_response_{0,1}_safe` are true, false or null (unknown); `harm_categories` a list; `is_harmful_prompt`
  a boolean (derived from the two safety labels when absent).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError

PREFERENCE_REQUIRED = ("prompt", "response_0", "response_1", "better_response_id", "safer_response_id")


def read_jsonl_rows(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-empty line; a missing file or malformed line raises DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), None, None, "file not found (run `safealign prepare` first)")
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(str(path), lineno, None, f"invalid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(str(path), lineno, None, "expected a JSON object")
            out.append((lineno, obj))
    return out


def _check_preference(row: dict, path: str, lineno: int, nonempty_responses: bool) -> dict:
    for field in PREFERENCE_REQUIRED:
        if field not in row:
            raise DataError(path, lineno, field, "missing")
    prompt = row["prompt"]
    if not (isinstance(prompt, str) and prompt.strip()):
        raise DataError(path, lineno, "prompt", f"must be a non-empty string (got {prompt!r:.60})")
    for field in ("response_0", "response_1"):
        value = row[field]
        if not isinstance(value, str):
            raise DataError(path, lineno, field, f"must be a string (got {value!r:.60})")
        if nonempty_responses and not value.strip():
            raise DataError(path, lineno, field, "must be a non-empty string")
    for field in ("better_response_id", "safer_response_id"):
        value = row[field]
        if isinstance(value, bool) or value not in (0, 1):
            raise DataError(path, lineno, field, f"must be 0 or 1 (got {value!r})")
    for field in ("is_response_0_safe", "is_response_1_safe"):
        value = row.get(field)
        if value is not None and not isinstance(value, bool):
            raise DataError(path, lineno, field, f"must be true, false or null (got {value!r})")
    cats = row.get("harm_categories", [])
    if cats is None:
        cats = []
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise DataError(path, lineno, "harm_categories", f"must be a list of strings (got {cats!r:.60})")
    row["harm_categories"] = cats
    if "is_harmful_prompt" not in row or row["is_harmful_prompt"] is None:
        row["is_harmful_prompt"] = bool(cats) or any(row.get(f"is_response_{i}_safe") is False for i in (0, 1))
    elif not isinstance(row["is_harmful_prompt"], bool):
        raise DataError(path, lineno, "is_harmful_prompt", f"must be true or false (got {row['is_harmful_prompt']!r})")
    return row


def read_preference_records(path: str | Path, nonempty_responses: bool = False) -> list[dict]:
    """Canonical preference records of `path`, validated (see the module docstring for the rules)."""
    return [_check_preference(row, str(path), lineno, nonempty_responses)
            for lineno, row in read_jsonl_rows(path)]


def read_safety_rows(path: str | Path) -> list[dict]:
    """Single-response safety rows `{id, prompt, response, category, is_safe}` (BeaverTails-style)."""
    out = []
    for lineno, row in read_jsonl_rows(path):
        for field in ("prompt", "response"):
            if not isinstance(row.get(field), str) or (field == "prompt" and not row[field].strip()):
                raise DataError(str(path), lineno, field, "missing or not a string")
        if not isinstance(row.get("is_safe"), bool):
            raise DataError(str(path), lineno, "is_safe", f"must be true or false (got {row.get('is_safe')!r})")
        out.append(row)
    return out


def prompts_of(records: list[dict], harmful: bool | None = None) -> list[dict]:
    """Distinct prompts (first occurrence order) with the union of their records' harm categories.

    `harmful`: True keeps the records flagged `is_harmful_prompt`, False the others, None all; a prompt's
    categories are the union over its kept records (a record whose two answers are both safe flags none,
    though its prompt is harmful). Returns `{prompt, categories}` rows.
    """
    by_prompt: dict[str, dict] = {}
    for rec in records:
        if harmful is not None and bool(rec.get("is_harmful_prompt")) != harmful:
            continue
        entry = by_prompt.setdefault(rec["prompt"], {"prompt": rec["prompt"], "categories": []})
        for c in rec.get("harm_categories") or []:
            if c not in entry["categories"]:
                entry["categories"].append(c)
    return list(by_prompt.values())
