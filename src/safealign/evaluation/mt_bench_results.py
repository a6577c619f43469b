"""MT-Bench scores from FastChat judgment files, as FastChat's `llm_judge/show_result.py` computes them.

`safealign evaluate mt-bench-results --judgments FILE [--questions FILE] --out DIR` reads
`model_judgment/<judge>_single.jsonl` and/or `<judge>_pair.jsonl` (a FastChat data folder holding
`model_judgment/` works too) for any models, and writes:

- `mt_bench_results.json` (single grading) = `{model: {overall, turn_1, turn_2, by_category, n, unparsable}}`:
  means of the ratings with score -1 (the judge's answer had no `[[rating]]`) left out and counted; overall
  pools both turns, as show_result's "Average"; `by_category` (pooled turns) needs `--questions`.
- `mt_bench_pairwise.json` (pairwise grading): each model's win / tie / loss under FastChat's rule (a game
  is played in both answer orders, g1 and g2; a win needs both to agree; a tie or any disagreement is a tie;
  games where either order errored are left out and counted), the win rate, the adjusted win rate (tie =
  half a win), and the judge's position consistency: `position_flips` = both orders decisive but for
  different models, i.e. the judge picked the same *position* twice (`favours_first` / `favours_second`),
  `half_ties` = a tie in one order only.

The MT-Bench stage writes the same single-grading summary for its own judgments (`summarize_single`).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

from ..data.records import read_jsonl_rows
from ..errors import ConfigError, DataError
from ..fileio import write_json, write_text


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize_single(rows: list[dict], categories: dict | None = None) -> dict:
    """{model: {overall, turn_1, turn_2, by_category, n, unparsable}} from FastChat single judgments."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    out = {}
    for model, rs in sorted(by_model.items()):
        valid = [r for r in rs if r["score"] != -1]
        cats: dict[str, list[float]] = defaultdict(list)
        for r in valid:
            if categories and r["question_id"] in categories:
                cats[categories[r["question_id"]]].append(r["score"])
        out[model] = {
            "overall": _mean([r["score"] for r in valid]),
            "turn_1": _mean([r["score"] for r in valid if r["turn"] == 1]),
            "turn_2": _mean([r["score"] for r in valid if r["turn"] == 2]),
            "by_category": {c: _mean(v) for c, v in sorted(cats.items())},
            "n": len(valid),
            "unparsable": len(rs) - len(valid),
        }
    return out


def summarize_pairwise(rows: list[dict]) -> dict:
    """FastChat's pairwise win/tie/loss per model plus the judge's position consistency."""
    counts: dict[str, Counter] = defaultdict(Counter)
    position = Counter()
    errors = 0
    for r in rows:
        g1, g2, m1, m2 = r["g1_winner"], r["g2_winner"], r["model_1"], r["model_2"]
        if "error" in (g1, g2):
            errors += 1
            continue
        if g1 == "tie" or g1 != g2:
            counts[m1]["tie"] += 1
            counts[m2]["tie"] += 1
        else:
            winner, loser = (m1, m2) if g1 == "model_1" else (m2, m1)
            counts[winner]["win"] += 1
            counts[loser]["loss"] += 1
        if g1 == g2:
            position["consistent"] += 1
        elif "tie" in (g1, g2):
            position["half_ties"] += 1
        else:  # g1 is in the original order (model_1 first), g2 in the swapped one (model_2 first)
            position["position_flips"] += 1
            position["favours_first" if g1 == "model_1" else "favours_second"] += 1
    models = {}
    for model, c in sorted(counts.items()):
        n = c["win"] + c["tie"] + c["loss"]
        models[model] = {"win": c["win"], "tie": c["tie"], "loss": c["loss"], "n": n,
                         "win_rate": c["win"] / n, "loss_rate": c["loss"] / n,
                         "win_rate_adjusted": (c["win"] + 0.5 * c["tie"]) / n}
    games = position["consistent"] + position["position_flips"] + position["half_ties"]
    return {"games": games, "errors": errors, "models": models,
            "position": {k: position.get(k, 0) for k in ("consistent", "position_flips", "favours_first",
                                                          "favours_second", "half_ties")},
            "consistency_rate": position["consistent"] / games if games else None}


def judgment_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted((p / "model_judgment" if (p / "model_judgment").is_dir() else p).glob("*.jsonl"))
        if not files:
            raise DataError(str(p), None, None, "no model_judgment/*.jsonl files")
        return files
    if not p.is_file():
        raise DataError(str(p), None, None, "no such file or folder")
    return [p]


def _check(rows: list[dict], path: Path, fields: tuple[str, ...]) -> None:
    for i, r in enumerate(rows, 1):
        for f in fields:
            if f not in r:
                raise DataError(str(path), i, f, "missing")


def load_categories(path: str | None) -> dict | None:
    """{question_id: category} of a FastChat question.jsonl (only these two fields are needed here; the
    MT-Bench stage's `load_questions` checks the turns too, and imports this module)."""
    if not path:
        return None
    rows = [r for _, r in read_jsonl_rows(path)]
    _check(rows, Path(path), ("question_id", "category"))
    return {q["question_id"]: q["category"] for q in rows}


def markdown(single: dict, pair: dict | None) -> str:
    lines = ["# MT-Bench results", ""]
    if single:
        cats = sorted({c for m in single.values() for c in m["by_category"]})
        lines += ["| model | overall | turn 1 | turn 2 | n | unparsable |" + "".join(f" {c} |" for c in cats),
                  "|---|---|---|---|---|---|" + "---|" * len(cats)]
        for model, m in single.items():
            f = ["n/a" if m[k] is None else f"{m[k]:.2f}" for k in ("overall", "turn_1", "turn_2")]
            lines.append(f"| {model} | {' | '.join(f)} | {m['n']} | {m['unparsable']} |"
                         + "".join(f" {m['by_category'].get(c, 0):.2f} |" for c in cats))
        lines.append("")
    if pair:
        lines += [f"Pairwise: {pair['games']} games ({pair['errors']} with an errored judgment left out); both "
                  f"answer orders agree in {pair['position']['consistent']}; position flips "
                  f"{pair['position']['position_flips']} (favour the first answer {pair['position']['favours_first']}"
                  f", the second {pair['position']['favours_second']}); a tie in one order only "
                  f"{pair['position']['half_ties']}.", "",
                  "| model | win | tie | loss | win rate | adjusted win rate |", "|---|---|---|---|---|---|"]
        lines += [f"| {m} | {v['win']} | {v['tie']} | {v['loss']} | {v['win_rate']:.3f} | "
                  f"{v['win_rate_adjusted']:.3f} |" for m, v in pair["models"].items()]
    return "\n".join(lines) + "\n"


def cli_mt_bench_results(args, cfg=None) -> int:
    """`safealign evaluate mt-bench-results --judgments FILE|FOLDER [--questions FILE] --out DIR`."""
    if not getattr(args, "judgments", None) or not getattr(args, "output", None):
        raise ConfigError("evaluate mt-bench-results: --judgments and --out are required")
    t0 = time.perf_counter()
    categories = load_categories(getattr(args, "questions", None))
    single_rows, pair_rows = [], []
    for f in judgment_files(args.judgments):
        rows = [r for _, r in read_jsonl_rows(f)]
        if rows and "g1_winner" in rows[0]:
            _check(rows, f, ("model_1", "model_2", "g1_winner", "g2_winner"))
            pair_rows += rows
        else:
            _check(rows, f, ("question_id", "model", "score", "turn"))
            single_rows += rows
    out = Path(args.output)
    single = summarize_single(single_rows, categories) if single_rows else {}
    pair = summarize_pairwise(pair_rows) if pair_rows else None
    if single:
        write_json(out / "mt_bench_results.json", single)
    if pair:
        write_json(out / "mt_bench_pairwise.json", pair)
    write_text(out / "mt_bench_results.md", markdown(single, pair))
    print(markdown(single, pair).strip())
    print(f"({time.perf_counter() - t0:.1f} s) -> {out}")
    return 0
