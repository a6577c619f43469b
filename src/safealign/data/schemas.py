"""Input schemas (PKU-SafeRLHF 2023/2024, the simplified pair schema, BeaverTails QA), their detection from
column names, and the conversion of one raw row into the canonical record of docs/DESIGN.md.

A row is either converted, *dropped* for a cleaning reason (`Drop`: missing or empty field, failed integrity
hash, identical responses) or *malformed* (`RowError`: wrong type, label not 0/1), which the caller turns into a
`DataError(file, row, field, problem)` or counts under "malformed" with `on_error: skip`.
"""

from __future__ import annotations

import ast
import hashlib
import json
from typing import Any

PKU2023 = ["prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe",
           "better_response_id", "safer_response_id"]
PKU2024_EXTRA = ["response_0_harm_category", "response_1_harm_category", "response_0_severity_level",
                 "response_1_severity_level"]  # prompt_source, response_*_source/_sha256 are optional
PAIR = ["prompt", "response_chosen", "response_rejected", "helpful_label", "harmless_label"]
BEAVERTAILS = ["prompt", "response", "category", "is_safe"]
REQUIRED = {"pku2023": PKU2023, "pku2024": PKU2023 + PKU2024_EXTRA, "pair": PAIR, "beavertails": BEAVERTAILS}
PREFERENCE_SCHEMAS = ("pku2023", "pku2024", "pair")


class RowError(Exception):
    """A malformed row: `field` has a wrong type or an impossible value."""

    def __init__(self, field: str | None, problem: str):
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field, self.problem = field, problem


class Drop(Exception):
    """A row removed by cleaning; `reason` is the counter it goes to. Reasons in `DEFECTS` are defects of the
    input (a missing or empty text or label, a text that fails the dataset's own hash): `on_error` decides
    whether they stop the run (raise) or are dropped and counted (skip); the others always just drop."""

    def __init__(self, reason: str, field: str | None = None, problem: str | None = None):
        super().__init__(reason)
        self.reason, self.field = reason, field
        self.problem = problem or {"missing_field": "missing", "empty_field": "empty"}.get(reason, reason)


DEFECTS = ("missing_field", "empty_field", "hash_mismatch")


def detect_schema(columns) -> str | None:
    """The schema whose columns are present (most specific first), or None."""
    cols = set(columns)
    if {"response_chosen", "response_rejected"} <= cols:
        return "pair"
    if {"response_0", "response_1"} <= cols:
        if cols & {"response_0_harm_category", "response_0_severity_level"}:
            return "pku2024"
        return "pku2023"
    if {"response", "is_safe"} <= cols:
        return "beavertails"
    return None


def missing_columns(schema: str, columns) -> list[str]:
    return [c for c in REQUIRED[schema] if c not in set(columns)]


def closest_schema(columns) -> tuple[str | None, list[str]]:
    """For columns no schema matches: the schema with the most of its required columns present (at least
    two, one of them `prompt`) and what it misses, so the error can name the missing field."""
    cols = set(columns)
    best = max(REQUIRED, key=lambda s: (len(cols & set(REQUIRED[s])), -len(REQUIRED[s])))
    if "prompt" not in cols or len(cols & set(REQUIRED[best])) < 2:
        return None, []
    return best, missing_columns(best, columns)


def check_hashes(row: dict, prompt: str, responses: tuple[str, ...]) -> None:
    """PKU-SafeRLHF 2024's integrity hashes, where present: response_i_sha256 == sha256(prompt + response_i)
    (UTF-8, hex). A mismatch means the text is not the text the labels were given for."""
    for i, response in enumerate(responses):
        field = f"response_{i}_sha256"
        expected = row.get(field)
        if _absent(expected) or expected == "":
            continue
        if not (isinstance(expected, str) and len(expected.strip()) == 64
                and all(c in "0123456789abcdef" for c in expected.strip().lower())):
            raise RowError(field, f"expected a 64-digit hex SHA-256 (got {expected!r:.40})")
        actual = hashlib.sha256((prompt + response).encode("utf-8")).hexdigest()
        if actual != expected.strip().lower():
            raise Drop("hash_mismatch", field, f"sha256(prompt + response_{i}) is {actual[:12]}…, the row says "
                                               f"{expected.strip()[:12]}…: the text was changed")


def stable_id(*texts: str) -> str:
    return hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- field readers
def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # None or NaN (pandas/parquet)


def text(row: dict, field: str) -> str:
    value = row.get(field)
    if _absent(value):
        raise Drop("missing_field", field)
    if not isinstance(value, str):
        raise RowError(field, f"expected a string (got {type(value).__name__} {value!r:.40})")
    if not value.strip():
        raise Drop("empty_field", field)
    return value


def boolean(row: dict, field: str, loose: bool) -> bool:
    value = row.get(field)
    if _absent(value) or (loose and value == ""):
        raise Drop("missing_field", field)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if loose and isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise RowError(field, f"expected true or false (got {value!r:.40})")


def binary_id(row: dict, field: str, loose: bool) -> int:
    value = row.get(field)
    if _absent(value) or (loose and value == ""):
        raise Drop("missing_field", field)
    if loose and isinstance(value, str):
        value = {"0": 0, "1": 1, "true": 1, "false": 0}.get(value.strip().lower(), value)
    if isinstance(value, (bool, int, float)) and value in (0, 1):
        return int(value)
    raise RowError(field, f"must be 0 or 1 (got {value!r:.40})")


def severity(row: dict, field: str, loose: bool) -> int | None:
    value = row.get(field)
    if _absent(value) or (loose and value == ""):
        return None
    if loose and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        raise RowError(field, f"expected a severity level >= 0 (got {value!r:.40})")
    return int(value)


def categories(row: dict, field: str) -> list[str]:
    """Flagged categories from a dict {category: bool}, a JSON/repr string of one, a name, or a list."""
    value = row.get(field)
    if _absent(value) or value == "":
        return []
    if isinstance(value, str) and value.strip()[:1] in "{[":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise RowError(field, f"cannot parse {value!r:.60}") from None
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, dict):
        flagged = []
        for k, v in value.items():
            if v is True or (v and isinstance(v, int)):
                flagged.append(str(k))
            elif not (v is False or v == 0 or _absent(v)):
                raise RowError(field, f"{k}: expected true or false (got {v!r:.40})")
        return sorted(flagged) if len(flagged) > 1 else flagged
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return sorted(value)
    raise RowError(field, f"expected a mapping of category -> bool or a category name (got {value!r:.60})")


# --------------------------------------------------------------------------- conversion
def to_record(row: dict, schema: str, source: str, loose: bool = False) -> dict:
    """One raw row -> a canonical preference record (pku2023/pku2024/pair) or a safety row (beavertails).

    `loose`: values came from a text format (CSV), so "true"/"1" strings are accepted for booleans/labels.
    """
    if not isinstance(row, dict):
        raise RowError(None, f"expected an object with named fields (got {type(row).__name__})")
    if schema == "beavertails":
        return _beavertails(row, source, loose)
    if schema == "pair":
        prompt, chosen, rejected = text(row, "prompt"), text(row, "response_chosen"), text(row, "response_rejected")
        helpful, harmless = binary_id(row, "helpful_label", loose), binary_id(row, "harmless_label", loose)
        _check_distinct(chosen, rejected)
        # response_0 = chosen. Safety booleans are unknown in this schema: kept as None (see docs/data.md).
        return _record(prompt, chosen, rejected, better=0 if helpful else 1, safer=0 if harmless else 1,
                       safe=(None, None), cats=[], sev=None, source=source)
    prompt, r0, r1 = text(row, "prompt"), text(row, "response_0"), text(row, "response_1")
    check_hashes(row, prompt, (r0, r1))
    safe = (boolean(row, "is_response_0_safe", loose), boolean(row, "is_response_1_safe", loose))
    better, safer = binary_id(row, "better_response_id", loose), binary_id(row, "safer_response_id", loose)
    cats: set[str] = set()
    levels = []
    if schema == "pku2024":
        for i in (0, 1):
            cats.update(categories(row, f"response_{i}_harm_category"))
            level = severity(row, f"response_{i}_severity_level", loose)
            if level is not None:
                levels.append(level)
    _check_distinct(r0, r1)
    rec = _record(prompt, r0, r1, better, safer, safe, sorted(cats), max(levels) if levels else None, source)
    # PKU 2024's provenance (which model wrote the prompt and each answer), kept when present
    sources = {k: row[f"{k}_source"] for k in ("prompt", "response_0", "response_1")
               if isinstance(row.get(f"{k}_source"), str) and row[f"{k}_source"]}
    if sources:
        rec["sources"] = sources
    return rec


def _check_distinct(a: str, b: str) -> None:
    if a.strip() == b.strip():
        raise Drop("identical_responses")


def _record(prompt, r0, r1, better, safer, safe, cats, sev, source) -> dict:
    harmful = None if None in safe else (not all(safe) or bool(cats))
    if cats:
        harmful = True
    return {"id": stable_id(prompt, r0, r1), "prompt": prompt, "response_0": r0, "response_1": r1,
            "better_response_id": better, "safer_response_id": safer,
            "is_response_0_safe": safe[0], "is_response_1_safe": safe[1],
            "harm_categories": cats, "severity": sev, "is_harmful_prompt": harmful, "source": source}


def _beavertails(row: dict, source: str, loose: bool) -> dict:
    prompt, response = text(row, "prompt"), text(row, "response")
    is_safe = boolean(row, "is_safe", loose)
    return {"id": stable_id(prompt, response), "prompt": prompt, "response": response,
            "category": categories(row, "category"), "is_safe": is_safe, "source": source}
