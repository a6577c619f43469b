"""PNG plots (matplotlib, Agg backend: no display needed): MT-Bench radar, safety by category, training curves."""

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


def safety_bar_chart(by_model: dict[str, dict[str, dict]], path: Path, title: str = "Safety rate by category") -> Path | None:
    """by_model: model -> {category: {"rate", "ci95"}}; grouped horizontal bars with 95% Wilson error bars."""
    cats = sorted({c for blocks in by_model.values() for c in blocks})
    if not cats:
        return None
    plt = _plt()
    n = len(by_model)
    height = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(8, max(3, 0.45 * len(cats) * max(1, n) ** 0.5 + 1)))
    for i, (model, blocks) in enumerate(by_model.items()):
        ys = [j + i * height for j in range(len(cats))]
        rates = [(blocks.get(c) or {}).get("rate") or 0.0 for c in cats]
        lo = [r - ((blocks.get(c) or {}).get("ci95") or [r, r])[0] for r, c in zip(rates, cats)]
        hi = [((blocks.get(c) or {}).get("ci95") or [r, r])[1] - r for r, c in zip(rates, cats)]
        ax.barh(ys, rates, height=height, xerr=[lo, hi], label=model, capsize=2)
    ax.set_yticks([j + height * (n - 1) / 2 for j in range(len(cats))])
    ax.set_yticklabels(cats, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("safe answers / all answers (95% Wilson CI)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of the TensorBoard event files under `log_dir` (tag -> [(step, value)])."""
    # lazily, like matplotlib: only the report reads event files, and tensorboard is slow to import
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for events_dir in sorted({p.parent for p in Path(log_dir).rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(events_dir), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    # A step logged twice (a resumed run, a final evaluation) keeps its last value.
    return {t: sorted(dict(v).items()) for t, v in series.items()}


def training_curves(logs_root: Path, out_dir: Path, max_tags: int = 12) -> list[Path]:
    """One PNG per stage folder under `<run dir>/logs/` with its scalar curves (loss, rewards, lambda, ...)."""
    out = []
    logs_root = Path(logs_root)
    if not logs_root.is_dir():
        return out
    for stage in sorted(p for p in logs_root.iterdir() if p.is_dir()):
        try:
            series = read_scalars(stage)
        except Exception as err:  # noqa: BLE001 - a corrupt event file must not sink the report
            log.warning("training curves: cannot read %s (%s)", stage, err)
            continue
        tags = [t for t in sorted(series) if len(series[t]) > 1][:max_tags]
        if not tags:
            continue
        plt = _plt()
        cols = min(3, len(tags))
        rows = math.ceil(len(tags) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
        for ax, tag in zip(axes.flat, tags):
            steps, vals = zip(*series[tag])
            ax.plot(steps, vals, linewidth=1)
            ax.set_title(tag, fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(tags):]:
            ax.axis("off")
        fig.suptitle(f"training curves: {stage.name}")
        fig.tight_layout()
        out.append(_save(fig, Path(out_dir) / f"curves_{stage.name}.png"))
    return out
