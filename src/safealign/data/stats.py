"""Statistics of a prepared dataset (`stats.json`) and their Markdown rendering (`stats.md`)."""

from __future__ import annotations

import json
import random
from collections import Counter


def percentiles(values: list[int], qs=(5, 25, 50, 75, 95, 100)) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    out = {}
    for q in qs:
        k = (len(ordered) - 1) * q / 100
        lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
        out[f"p{q}"] = round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)
    return out


def _words(text: str) -> int:
    return len(text.split())


def preference_stats(records: list[dict]) -> dict:
    n = len(records)
    if not n:
        return {"records": 0}
    known = [r for r in records if r["is_response_0_safe"] is not None]
    unsafe = sum((not r["is_response_0_safe"]) + (not r["is_response_1_safe"]) for r in known)
    mixed = sum(r["is_response_0_safe"] != r["is_response_1_safe"] for r in known)
    cats = Counter(c for r in records for c in r["harm_categories"])
    sev = Counter(str(r["severity"]) for r in records if r["severity"] is not None)
    return {
        "records": n,
        "prompts": len({r["prompt"] for r in records}),
        "better_is_safer": round(sum(r["better_response_id"] == r["safer_response_id"] for r in records) / n, 4),
        "better_is_response_0": round(sum(r["better_response_id"] == 0 for r in records) / n, 4),
        "safety_labels_known": len(known),
        "unsafe_response_share": round(unsafe / (2 * len(known)), 4) if known else None,
        "pairs_one_safe_one_unsafe": mixed,
        "pairs_both_unsafe": sum(not r["is_response_0_safe"] and not r["is_response_1_safe"] for r in known),
        "better_response_unsafe": sum(r[f"is_response_{r['better_response_id']}_safe"] is False for r in known),
        # distinct prompts (a prompt appears in several records); the records on them counted apart
        "harmful_prompts": len({r["prompt"] for r in records if r["is_harmful_prompt"]}),
        "harmful_prompt_records": sum(bool(r["is_harmful_prompt"]) for r in records),
        "harm_categories": dict(cats.most_common()),
        "severity": dict(sorted(sev.items())),
        "length_words": {
            "prompt": percentiles([_words(r["prompt"]) for r in records]),
            "response": percentiles([_words(r[f"response_{i}"]) for r in records for i in (0, 1)]),
        },
    }


def safety_stats(rows: list[dict]) -> dict:
    if not rows:
        return {"rows": 0}
    return {
        "rows": len(rows),
        "prompts": len({r["prompt"] for r in rows}),
        "unsafe_share": round(sum(not r["is_safe"] for r in rows) / len(rows), 4),
        "categories": dict(Counter(c for r in rows for c in r["category"]).most_common()),
        "length_words": {"prompt": percentiles([_words(r["prompt"]) for r in rows]),
                         "response": percentiles([_words(r["response"]) for r in rows])},
    }


def sample(records: list[dict], n: int, seed: int) -> list[dict]:
    if n <= 0 or not records:
        return []
    rng = random.Random(seed)
    return [records[i] for i in sorted(rng.sample(range(len(records)), min(n, len(records))))]


def render_markdown(stats: dict) -> str:
    lines = [f"# Prepared data: {stats['dataset']}", ""]
    lines += [f"Schema(s): {', '.join(f'{k} ({v} rows)' for k, v in stats['schemas'].items())}. "
              f"Rows read: {stats['rows_read']}; kept: {stats['rows_kept']}; dropped: {stats['rows_dropped']}. "
              f"Split by prompt with seed {stats['split']['seed']} "
              f"(fractions {stats['split']['fractions']}).", ""]
    if stats.get("sources"):
        lines += ["Kept records by source: " + ", ".join(f"`{k}` {v}" for k, v in stats["sources"].items()) + ".", ""]
    lines += ["## Splits", "", "Prompts are distinct prompts; a prompt may have several records (response pairs).", "",
              "| split | records | prompts | better = safer | unsafe responses | harmful prompts "
              "(their records) | safety rows |", "|---|---|---|---|---|---|---|"]
    for split, s in stats["splits"].items():
        p, q = s["preference"], s["safety"]
        lines.append(f"| {split} | {p['records']} | {p.get('prompts', 0)} | {_pct(p.get('better_is_safer'))} | "
                     f"{_pct(p.get('unsafe_response_share'))} | {p.get('harmful_prompts', 0)} "
                     f"({p.get('harmful_prompt_records', 0)}) | {q['rows']} |")
    lines += ["", "## Dropped rows", ""]
    if stats["dropped"]:
        lines += ["| reason | rows |", "|---|---|"] + [f"| {k} | {v} |" for k, v in stats["dropped"].items()]
    else:
        lines.append("None.")
    if stats.get("errors"):
        lines += ["", "First skipped malformed rows:", ""] + [f"- `{e}`" for e in stats["errors"]]
    allp = stats["all"]["preference"]
    if allp.get("records"):
        lines += ["", "## Labels (all splits)", "",
                  f"- better response is also the safer one: {_pct(allp['better_is_safer'])}",
                  f"- better response is response_0: {_pct(allp['better_is_response_0'])}",
                  f"- unsafe responses: {_pct(allp['unsafe_response_share'])} "
                  f"(safety labels known for {allp['safety_labels_known']} of {allp['records']} records)",
                  f"- pairs with one safe and one unsafe response: {allp['pairs_one_safe_one_unsafe']}; "
                  f"both unsafe: {allp['pairs_both_unsafe']}; the better response is unsafe: "
                  f"{allp['better_response_unsafe']}"]
        if allp["harm_categories"]:
            lines += ["", "## Harm categories (records flagging each)", "", "| category | records |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in allp["harm_categories"].items()]
        lines += ["", "## Lengths (words)", "", "| text | " + " | ".join(allp["length_words"]["prompt"]) + " |",
                  "|---|" + "---|" * len(allp["length_words"]["prompt"])]
        for name, pct in allp["length_words"].items():
            lines.append(f"| {name} | " + " | ".join(str(v) for v in pct.values()) + " |")
    if stats.get("samples"):
        lines += ["", "## Random records", ""]
        for rec in stats["samples"]:
            lines += ["```json", json.dumps(rec, ensure_ascii=False, indent=1), "```"]
    return "\n".join(lines) + "\n"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
