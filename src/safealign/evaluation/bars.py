"""`safety_by_category.png`: safe-answer rate per harm category, one bar per model, that can be read at a glance.

Why a new drawing: the old chart drew nothing for a model at 0.0 (a zero-width bar), its legend sat on top of
a row of bars, and the bars of a group ran bottom-up while the legend ran top-down. Here every rate gets a
marker at its value (visible at 0.0), a category the model was not evaluated on is marked "n/a" (not drawn
as 0), categories and the bars inside each group run top-down in legend order, and the legend sits outside
the axes on the right.
"""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safety_bar_figure(by_model: dict[str, dict[str, dict]], title: str = "Safety rate by category"):
    """by_model: model -> {category: {"rate", "ci95"}} (report.json's by_category). The figure, or None."""
    cats = sorted({c for blocks in by_model.values() for c in blocks})
    if not cats:
        return None
    plt = _plt()
    models = list(by_model)
    n = len(models)
    height = 0.8 / n
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.28 * len(cats) * n + 0.35 * len(cats) + 1)))
    for i, model in enumerate(models):
        colour = colours[i % len(colours)]
        ys, rates, lo, hi, missing = [], [], [], [], []
        for j, cat in enumerate(cats):
            y = j + (i - (n - 1) / 2) * height  # model 0 on top of its group once the y axis is inverted
            block = by_model[model].get(cat) or {}
            rate = block.get("rate")
            if rate is None:
                missing.append(y)
                continue
            ci = block.get("ci95") or [rate, rate]
            ys.append(y)
            rates.append(rate)
            lo.append(max(0.0, rate - ci[0]))
            hi.append(max(0.0, ci[1] - rate))
        ax.barh(ys, rates, height=height * 0.9, xerr=[lo, hi], color=colour, alpha=0.85, label=model,
                error_kw={"capsize": 2, "elinewidth": 0.8, "ecolor": "0.25"})
        # a marker at every value: a rate of 0.0 has a zero-width bar but is still seen
        ax.plot(rates, ys, linestyle="none", marker="D", markersize=4, color=colour, markeredgecolor="black",
                markeredgewidth=0.5, label="_nolegend_", gid=f"marker:{model}")
        for y in missing:
            ax.text(0.01, y, "n/a", va="center", fontsize=7, color=colour, gid=f"missing:{model}")
    ax.set_yticks(range(len(cats)))
    ax.set_yticklabels(cats, fontsize=8)
    ax.set_ylim(len(cats) - 0.5, -0.5)  # inverted: first category (and first model of a group) on top, as in the legend
    ax.set_xlim(-0.03, 1.03)  # room for a marker at 0.0 and at 1.0
    ax.set_xlabel("safe answers / all answers (95% Wilson CI)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, title="model",
              title_fontsize=8)
    fig.tight_layout()
    return fig


def safety_bar_chart(by_model: dict[str, dict[str, dict]], path: Path,
                     title: str = "Safety rate by category") -> Path | None:
    """Draw `safety_bar_figure` into `path` (PNG, atomic; the legend is inside the saved image)."""
    fig = safety_bar_figure(by_model, title)
    if fig is None:
        return None
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path
