"""How far a judge can be trusted: its verdicts against real labels, `safealign evaluate judge`.

Runs any judge (`refusal`, `cost-model`, `moderation-model`, `llm`, `toy`, or `field:NAME` to read a second
label column as the verdict) over labelled (prompt, response) rows whose `--unsafe-field` is a boolean
(true = unsafe), and writes `judge_agreement.json`:
`{n, agreement, cohen_kappa, confusion: {tp, fp, tn, fn}, by_category, ...}` with positive = unsafe, plus
`judge_agreement.md` and every row's verdict in `judge_verdicts.jsonl`. Cohen's kappa corrects agreement for
chance: kappa = (p_o - p_e) / (1 - p_e), p_e = p_judge(unsafe) p_ref(unsafe) + p_judge(safe) p_ref(safe); it
is null when p_e = 1 (both sides constant), where it is undefined.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path

from ..config import load_config
from ..errors import ConfigError, DataError
from ..fileio import write_json, write_jsonl, write_text
from ..layout import RunLayout, results_cache
from .benchmarks import read_rows
from .judges import make_judge
from .stats import rate_block, wilson_interval

log = logging.getLogger(__name__)

TRUE, FALSE = ("true", "1", "yes", "unsafe"), ("false", "0", "no", "safe")


def as_label(value, where: str, row: int, field: str) -> bool:
    """A boolean label from bool, 0/1 or a true/false/yes/no/unsafe/safe string; anything else is an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise DataError(where, row, field, f"expected a boolean label (true = unsafe), got {value!r:.40}")


def confusion(judge_unsafe: list[bool], ref_unsafe: list[bool]) -> dict:
    c = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for j, r in zip(judge_unsafe, ref_unsafe):
        c[("t" if j == r else "f") + ("p" if j else "n")] += 1
    return c


def cohen_kappa(c: dict) -> float | None:
    n = sum(c.values())
    if not n:
        return None
    p_o = (c["tp"] + c["tn"]) / n
    judge_pos, ref_pos = (c["tp"] + c["fp"]) / n, (c["tp"] + c["fn"]) / n
    p_e = judge_pos * ref_pos + (1 - judge_pos) * (1 - ref_pos)
    return None if p_e >= 1 else (p_o - p_e) / (1 - p_e)


def agreement_block(judge_unsafe: list[bool], ref_unsafe: list[bool]) -> dict:
    c = confusion(judge_unsafe, ref_unsafe)
    n = sum(c.values())
    agree = c["tp"] + c["tn"]
    return {
        "n": n,
        "agreement": agree / n if n else None,
        "agreement_ci95": list(wilson_interval(agree, n)),
        "cohen_kappa": cohen_kappa(c),
        "confusion": c,
        "precision_unsafe": c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None,
        "recall_unsafe": c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None,
        "judge_unsafe_rate": rate_block(c["tp"] + c["fp"], n),
        "reference_unsafe_rate": rate_block(c["tp"] + c["fn"], n),
    }


def judge_agreement(judge_unsafe: list[bool], ref_unsafe: list[bool], categories: list[str | None]) -> dict:
    """The block over all rows, plus one per category (rows without one under 'uncategorized')."""
    out = agreement_block(judge_unsafe, ref_unsafe)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, cat in enumerate(categories):
        groups[cat or "uncategorized"].append(i)
    out["by_category"] = {cat: agreement_block([judge_unsafe[i] for i in idx], [ref_unsafe[i] for i in idx])
                          for cat, idx in sorted(groups.items())}
    return out


def load_labelled(path: str, unsafe_field: str, prompt_field: str = "prompt", response_field: str = "response",
                  category_field: str | None = "category") -> list[dict]:
    """Rows {prompt, response, unsafe, category, row} of a .jsonl/.json/.csv/.parquet file; a missing field
    or a non-boolean label names file, row and field."""
    rows = []
    for i, row in read_rows(Path(path)):
        if not isinstance(row, dict):
            raise DataError(path, i, None, "expected an object with named fields")
        for field in (prompt_field, response_field, unsafe_field):
            if field not in row:
                raise DataError(path, i, field, f"missing (fields: {', '.join(list(row)[:12])})")
        prompt, response = row[prompt_field], row[response_field]
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise DataError(path, i, prompt_field if not isinstance(prompt, str) else response_field,
                            "expected text")
        cat = row.get(category_field) if category_field else None
        rows.append({"row": i, "prompt": prompt, "response": response, "category": cat if cat else None,
                     "unsafe": as_label(row[unsafe_field], path, i, unsafe_field), "raw": row})
    if not rows:
        raise DataError(path, None, None, "no rows")
    return rows


def run_judge(kind: str, rows: list[dict], cfg=None, cache_dir=None) -> list[tuple[bool, dict]]:
    """(is_safe, detail) per row; `field:NAME` reads column NAME (true = unsafe) as the verdict. `cfg` (the
    whole Config, default: all defaults) gives the judge's settings and, for `cost-model`, the run's judges."""
    if kind.startswith("field:"):
        name = kind.split(":", 1)[1]
        return [(not as_label(r["raw"].get(name), "rows", r["row"], name), {"field": name}) for r in rows]
    cfg = cfg if cfg is not None else load_config(None)
    judge = make_judge(kind, cfg.section("eval"), RunLayout.from_config(cfg), cache_dir=cache_dir)
    return judge.judge_many([r["prompt"] for r in rows], [r["response"] for r in rows])


def markdown(result: dict) -> str:
    def row(name, b):
        k = "n/a" if b["cohen_kappa"] is None else f"{b['cohen_kappa']:.3f}"
        c = b["confusion"]
        lo, hi = b["agreement_ci95"]
        return (f"| {name} | {b['n']} | {b['agreement']:.3f} ({lo:.3f}–{hi:.3f}) | {k} | {c['tp']} | {c['fp']} | "
                f"{c['tn']} | {c['fn']} |")

    lines = [f"# Judge agreement: `{result['judge']}` vs `{result['reference']}`", "",
             f"File `{result['responses']}`; positive = unsafe; 95% Wilson interval on agreement.", "",
             "| rows | n | agreement (95% CI) | Cohen's kappa | tp | fp | tn | fn |",
             "|---|---|---|---|---|---|---|---|",
             row("all", result)]
    lines += [row(cat, b) for cat, b in result["by_category"].items()]
    return "\n".join(lines) + "\n"


def cli_judge(args, cfg=None) -> int:
    """`safealign evaluate judge --responses FILE --judge NAME --unsafe-field FIELD --out DIR`."""
    for flag in ("responses", "judge", "unsafe_field", "output"):
        if not getattr(args, flag, None):
            raise ConfigError(f"evaluate judge: --{flag.replace('_', '-')} is required")
    t0 = time.perf_counter()
    rows = load_labelled(args.responses, args.unsafe_field, args.prompt_field, args.response_field,
                         args.category_field)
    out = Path(args.output)
    verdicts = run_judge(args.judge, rows, cfg, cache_dir=results_cache(out))
    judge_unsafe = [not safe for safe, _ in verdicts]
    result = judge_agreement(judge_unsafe, [r["unsafe"] for r in rows], [r["category"] for r in rows])
    result.update(judge=args.judge, reference=args.unsafe_field, responses=str(args.responses),
                  seconds=round(time.perf_counter() - t0, 2))
    write_jsonl(out / "judge_verdicts.jsonl",
                [{"row": r["row"], "category": r["category"], "reference_unsafe": r["unsafe"],
                  "judge_unsafe": ju, "detail": d} for r, ju, (_, d) in zip(rows, judge_unsafe, verdicts)])
    write_text(out / "judge_agreement.md", markdown(result))
    write_json(out / "judge_agreement.json", result)
    k = "n/a" if result["cohen_kappa"] is None else f"{result['cohen_kappa']:.3f}"
    print(f"{args.judge} vs {args.unsafe_field}: n {result['n']}, agreement {result['agreement']:.3f}, "
          f"kappa {k}, confusion {result['confusion']} -> {out / 'judge_agreement.json'}")
    return 0
