"""`safealign report`: gather every evaluated model folder into report.md + report.json with plots.

A model folder is any sub-folder of the results folder holding `safety.json` or `mt_bench.json`
(`helpfulness.json` and the distillation stage's `efficiency.json` are picked up when present). Deltas are
taken against the model named `base_name` (default `base`). Training curves come from the TensorBoard event
files under the run's `logs/<stage>/` (`layout.logs`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import SafeAlignError
from ..fileio import read_json, write_json, write_text
from ..layout import RunLayout
from .efficiency import efficiency_markdown
from .plots import radar_chart, safety_bar_chart, training_curves

log = logging.getLogger(__name__)


def _maybe(path: Path):
    return read_json(path) if path.is_file() else None


def collect_model(folder: Path) -> dict | None:
    safety, mt, helpful, eff = (_maybe(folder / f) for f in
                                ("safety.json", "mt_bench.json", "helpfulness.json", "efficiency.json"))
    if safety is None and mt is None:
        return None
    entry: dict = {"safety_rate": None, "safety_ci": None, "safety_judge": None, "n_safety": None,
                   "by_category": {}, "helpfulness": None, "helpfulness_ci": None, "helpfulness_judge": None,
                   "mt_bench": None}
    if safety:
        entry.update(safety_rate=safety["safety_rate"], safety_ci=safety["safety_ci"], safety_judge=safety["judge"],
                     n_safety=safety["n"], by_category=safety["by_category"])
        if safety.get("by_judge"):
            entry["safety_by_judge"] = {k: {"safety_rate": v["safety_rate"], "safety_ci": v["safety_ci"]}
                                        for k, v in safety["by_judge"].items()}
    if helpful:
        entry.update(helpfulness=helpful.get("helpfulness"), helpfulness_ci=helpful.get("helpfulness_ci"),
                     helpfulness_judge=helpful.get("judge"))
    if mt:
        entry["mt_bench"] = {"overall": mt["overall"], "per_turn": mt["per_turn"], "per_category": mt["per_category"],
                             "judge": mt["judge"], "n_unparsable": mt["n_unparsable"], "n_scored": mt["n_scored"]}
    if eff is not None:
        entry["efficiency"] = eff
    return entry


def _delta(a, b):
    return None if a is None or b is None else a - b


def deltas(entry: dict, base: dict) -> dict:
    out = {"safety_rate": _delta(entry["safety_rate"], base["safety_rate"]),
           "helpfulness": _delta(entry["helpfulness"], base["helpfulness"]),
           "by_category": {c: _delta(b.get("rate"), (base["by_category"].get(c) or {}).get("rate"))
                           for c, b in entry["by_category"].items()}}
    if entry["mt_bench"] and base["mt_bench"]:
        out["mt_bench"] = _delta(entry["mt_bench"]["overall"], base["mt_bench"]["overall"])
    return out


def build_report(results_dir, out_dir=None, base_name: str = "base", logs_dir=None,
                 models: list[str] | None = None) -> dict:
    """Write report.json, report.md and the plots into `out_dir` (default: `results_dir`); return report.json.

    `models`: report only these result folders (the pipeline passes its plan, so a folder an earlier run left
    behind stays out); others with results are listed under "not_included". Default: every folder.
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir or results_dir)
    found = {}
    folders = sorted(p for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if results_dir.is_dir() else []
    for folder in folders:
        entry = collect_model(folder)
        if entry is not None:
            found[folder.name] = entry
    wanted = list(found) if models is None else [m for m in models if m in found]
    models = {m: found[m] for m in wanted}
    not_included = sorted(set(found) - set(models))
    base = models.get(base_name)
    for name, entry in models.items():
        entry["delta_vs_base"] = deltas(entry, base) if base is not None and name != base_name else None
    plots = {}
    by_cat = {n: e["by_category"] for n, e in models.items() if e["by_category"]}
    if by_cat and (p := safety_bar_chart(by_cat, out_dir / "safety_by_category.png")):
        plots["safety_by_category"] = p.name
    mt = {n: e["mt_bench"]["per_category"] for n, e in models.items() if e["mt_bench"]}
    if mt and (p := radar_chart(mt, out_dir / "mt_bench_radar.png")):
        plots["mt_bench_radar"] = p.name
    if logs_dir is not None:
        for p in training_curves(Path(logs_dir), out_dir):
            plots[p.stem] = p.name
    report = {"base": base_name if base is not None else None, "models": models, "plots": plots,
              "not_included": not_included}
    write_json(out_dir / "report.json", report)
    write_text(out_dir / "report.md", report_markdown(report))
    return report


def _f(x, fmt="{:.3f}"):
    return "–" if x is None else fmt.format(x)


def _signed(x, fmt="{:+.3f}"):
    return "" if x is None else f" ({fmt.format(x)})"


def report_markdown(report: dict) -> str:
    models = report["models"]
    lines = ["# safealign evaluation report", ""]
    if not models:
        return "\n".join(lines + ["No evaluated models found.", ""])
    lines += [f"Deltas (in brackets) are against `{report['base']}`." if report["base"] else
              "No base model among the results: no deltas.", "",
              "| model | safety rate (95% CI) | safety judge | helpfulness | helpfulness judge | MT-Bench |",
              "|---|---|---|---|---|---|"]
    for name, e in models.items():
        d = e.get("delta_vs_base") or {}
        ci = e["safety_ci"]
        safety = _f(e["safety_rate"]) + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "") + _signed(d.get("safety_rate"))
        mt = _f(e["mt_bench"]["overall"], "{:.2f}") + _signed(d.get("mt_bench"), "{:+.2f}") if e["mt_bench"] else "–"
        lines.append(f"| {name} | {safety} | {e['safety_judge'] or '–'} | {_f(e['helpfulness'])}"
                     f"{_signed(d.get('helpfulness'))} | {e['helpfulness_judge'] or '–'} | {mt} |")
    cats = sorted({c for e in models.values() for c in e["by_category"]})
    if cats:
        names = list(models)
        lines += ["", "## Safety rate by category", "", "| category | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        for c in cats:
            cells = []
            for n in names:
                b = models[n]["by_category"].get(c)
                cells.append(f"{b['rate']:.2f} (n={b['n']})" if b else "–")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    mt_models = {n: e["mt_bench"] for n, e in models.items() if e["mt_bench"]}
    if mt_models:
        mcats = sorted({c for m in mt_models.values() for c in m["per_category"]})
        lines += ["", "## MT-Bench by category", "", "| category | " + " | ".join(mt_models) + " |",
                  "|---" * (len(mt_models) + 1) + "|"]
        for c in mcats:
            lines.append(f"| {c} | " + " | ".join(_f(m["per_category"].get(c), "{:.2f}") for m in mt_models.values())
                         + " |")
        lines.append("| turn 1 / turn 2 | " + " | ".join(
            f"{_f(m['per_turn'].get('1'), '{:.2f}')} / {_f(m['per_turn'].get('2'), '{:.2f}')}"
            for m in mt_models.values()) + " |")
        lines.append("| unparsable judgments | " + " | ".join(str(m["n_unparsable"]) for m in mt_models.values()) + " |")
    eff = {n: e["efficiency"] for n, e in models.items() if e.get("efficiency")}
    if eff:
        # the base first: the table's "vs" columns are relative to its first row
        ordered = dict(sorted(eff.items(), key=lambda kv: kv[0] != "base"))
        table = efficiency_markdown(ordered).split("\n", 2)[2]  # drop its own "# Efficiency" title
        lines += ["", "## Efficiency", "", table.rstrip("\n")]
    if report["plots"]:
        lines += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in report["plots"].items()]
    return "\n".join(lines) + "\n"


def cli_main(cfg, args) -> int:
    layout = RunLayout.from_config(cfg)
    results = Path(getattr(args, "results", None) or layout.results)
    out = Path(getattr(args, "output", None) or results)
    only = [m.strip() for m in args.models.split(",") if m.strip()] if getattr(args, "models", None) else None
    missing = [m for m in only or [] if collect_model(results / m) is None]
    if missing:  # before anything is written: a typo must not produce a report that silently lacks a model
        raise SafeAlignError(f"report --models: no safety.json or mt_bench.json under {results}/{missing[0]}")
    report = build_report(results, out, logs_dir=layout.logs, models=only)
    if report["not_included"]:
        print(f"report: left out {', '.join(report['not_included'])} (not in --models)")
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"report: {out / 'report.md'} ({len(report['models'])} models)")
    return 0
