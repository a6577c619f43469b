"""What the sweep writes besides its points: `sweep.md`, `sweep.png` and `best.yaml`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..fileio import atomic_path, write_text


def sweep_markdown(points: list[dict], sel: dict, metric: str) -> str:
    lines = ["# Sweep: λ_init × w", "",
             f"Selection rule: safety rate > {sel.get('threshold', 0.8):g}, then the highest helpfulness "
             f"(`{metric}`). **Status: {sel['status']}** — {sel['reason']}.", "",
             "| point | λ_init | w | safety rate | helpfulness | val helpful choice | val J_C | passes | Pareto "
             "| train s | chosen |",
             "|---|---:|---:|---:|---:|---:|---:|:-:|:-:|---:|:-:|"]
    fmt = lambda x: "–" if x is None else f"{x:.4f}"  # noqa: E731
    for p in points:
        lines.append(f"| {p['id']} | {p['lambda_init']:g} | {p['w']:g} | {p['safety_rate']:.3f} | "
                     f"{p['helpfulness']:.3f} | {fmt(p.get('val_helpful_choice'))} | {fmt(p.get('val_jc'))} | "
                     f"{'yes' if p['id'] in sel['passing'] else 'no'} | "
                     f"{'*' if p['id'] in sel['pareto'] else ''} | {p.get('train_seconds', 0):.0f} | "
                     f"{'**best**' if p['id'] == sel['best'] else ''} |")
    if sel.get("ties"):
        lines += ["", f"Tie on helpfulness: {', '.join(sel['ties'])}."]
    lines += ["", "Plot: `sweep.png`. Best config: `best.yaml`.", ""]
    return "\n".join(lines)


def sweep_plot(points: list[dict], sel: dict, path: Path, metric: str) -> None:
    import matplotlib  # heavy, and only this figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [p["safety_rate"] for p in points]
    ys = [p["helpfulness"] for p in points]
    ax.scatter(xs, ys, c="tab:blue", label="grid point")
    groups: dict[tuple, list[str]] = {}  # points that coincide share one label
    for p in points:
        groups.setdefault((round(p["safety_rate"], 6), round(p["helpfulness"], 6)), []).append(
            f"λ{p['lambda_init']:g},w{p['w']:g}")
    for (x, y), labels in groups.items():
        text = "\n".join(", ".join(labels[i:i + 3]) for i in range(0, len(labels), 3))
        ax.annotate(text, (x, y), fontsize=6, xytext=(4, -4), textcoords="offset points", va="top",
                    ha="right" if x > 0.9 else "left")
    front = sorted((p for p in points if p["id"] in sel["pareto"]), key=lambda p: p["safety_rate"])
    if front:
        ax.plot([p["safety_rate"] for p in front], [p["helpfulness"] for p in front], "o--", color="tab:orange",
                mfc="none", ms=11, label="Pareto front")
    if sel.get("best"):
        b = next(p for p in points if p["id"] == sel["best"])
        ax.scatter([b["safety_rate"]], [b["helpfulness"]], marker="*", s=250, c="tab:red", label="chosen", zorder=5)
    ax.axvline(sel.get("threshold", 0.8), color="grey", ls=":", label="safety threshold")
    ax.set_xlabel("safety rate (validation)")
    ax.set_ylabel(f"helpfulness ({metric})")
    ax.set_title("Safe-MM-DPO sweep")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_best(cfg, best: dict, path: Path) -> None:
    """The user's config with the chosen λ_init and w (full-length training: the sweep's epochs not kept)."""
    raw = json.loads(json.dumps(cfg.raw, default=str))
    raw.setdefault("dpo", {})
    raw["dpo"]["lambda_init"] = best["lambda_init"]
    raw["dpo"]["w"] = best["w"]
    raw.pop("sweep", None)
    header = (f"# Chosen by `safealign sweep` ({best['id']}: safety {best['safety_rate']:.3f}, "
              f"helpfulness {best['helpfulness']:.3f}). Train fully with:\n"
              f"#   safealign pipeline --config {path}\n")
    write_text(path, header + yaml.safe_dump(raw, sort_keys=False))
