"""The MT-Bench radar chart (PNG, matplotlib's Agg backend: no display needed).

The safety bar chart is `evaluation.bars`, the training curves `evaluation.curves` (panels chosen by meaning).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from ..fileio import atomic_path

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def radar_chart(scores: dict[str, dict[str, float | None]], path: Path, title: str = "MT-Bench") -> Path | None:
    """scores: model -> {category: mean rating 1..10}. One polygon per model."""
    cats = sorted({c for s in scores.values() for c in s})
    if not cats:
        return None
    plt = _plt()
    angles = [2 * math.pi * i / len(cats) for i in range(len(cats))] + [0.0]
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(111, polar=True)
    for model, s in scores.items():
        vals = [s.get(c) or 0.0 for c in cats]
        ax.plot(angles, vals + vals[:1], label=model, linewidth=1.5)
        ax.fill(angles, vals + vals[:1], alpha=0.1)
    ax.set_xticks(angles[:-1])
    ax.set_xticklabels(cats, fontsize=8)
    ax.set_ylim(0, 10)
    ax.set_title(title)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    return _save(fig, path)
