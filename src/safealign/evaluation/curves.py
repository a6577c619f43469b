"""Training curves chosen by what they mean for each stage, read from the TensorBoard event files.

Why: picking "the first 12 tags" alphabetically filled `curves_dpo.png` with eval-set constants and runtime
figures while the training loss, λ and the safety loss were missing. Here each stage kind has a fixed list of
panels (`PANELS`), each naming the metrics the trainers log (`dpo/trainer.py` METRIC_KEYS, `rm/trainer.py`,
Trainer's own `loss`/`learning_rate`, rewritten by transformers' TensorBoard callback as `train/<key>` and
`eval/<key>`). A panel is drawn when at least one of its series has data; train and eval values of one figure
share a panel. `plot_stage_curves` returns the panel names it drew, so tests (and the report) can say what a
figure shows.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Callable

from ..fileio import atomic_path

log = logging.getLogger(__name__)
Points = list[tuple[int, float]]


@dataclasses.dataclass(frozen=True)
class Series:
    """One line: the first of `tags` that has data (or, with `merge`, every one of them: e.g. SFT's periodic
    eval loss plus its before/after evaluations), optionally transformed (loss -> perplexity)."""

    tags: tuple[str, ...]
    label: str
    merge: bool = False
    transform: Callable[[float], float] | None = None
    eval: bool = False  # drawn with markers: few points

    def points(self, scalars: dict[str, Points]) -> Points:
        found = [t for t in self.tags if scalars.get(t)]
        if not found:
            return []
        pts = dict(p for t in (found if self.merge else found[:1]) for p in scalars[t])
        out = sorted(pts.items())
        if self.transform:
            out = [(s, _safe(self.transform, v)) for s, v in out]
        return out


def _safe(fn, v: float) -> float:
    try:
        return fn(v)
    except OverflowError:
        return math.inf


@dataclasses.dataclass(frozen=True)
class Panel:
    name: str
    series: tuple[Series, ...]
    threshold: str | None = None  # a tag whose last value is drawn as a dashed horizontal line
    needs_any: tuple[str, ...] = ()  # drawn only when one of these tags exists (or the series varies)


def _tv(key: str, train: str = "train", evaluation: str = "eval") -> tuple[Series, ...]:
    return Series((f"train/{key}",), train), Series((f"eval/{key}",), evaluation, eval=True)


LEARNING_RATE = Panel("learning rate", (Series(("train/learning_rate",), "learning rate"),))
_EVAL_LOSS_TAGS = ("eval/loss", "train/initial_val_loss", "train/val_loss")  # SFT: periodic, before, after

PANELS: dict[str, tuple[Panel, ...]] = {
    "dpo": (
        Panel("total loss", (Series(("train/loss_total", "train/loss"), "train"),
                             Series(("eval/loss_total", "eval/loss"), "eval", eval=True))),
        Panel("helpful loss L_H", _tv("loss_helpful")),
        Panel("safety loss L_S", _tv("loss_safety")),
        Panel("KL loss (k3 per token)", _tv("loss_kl")),
        Panel("λ", (Series(("train/lambda",), "λ"),), needs_any=("train/cost_threshold", "train/jc")),
        Panel("J_C vs threshold", (Series(("train/jc",), "J_C"),), threshold="train/cost_threshold"),
        Panel("implicit reward margin, helpful pair", _tv("logratio_margin_helpful")),
        Panel("implicit reward margin, safety pair", _tv("logratio_margin_safety")),
        Panel("accuracy, helpful pair", _tv("accuracy_helpful")),
        Panel("accuracy, safety pair", _tv("accuracy_safety")),
        Panel("β_H / β_S", (Series(("train/beta_helpful_mean",), "β_H"), Series(("train/beta_safety_mean",), "β_S"))),
        Panel("perplexity of chosen answers", _tv("perplexity")),
        LEARNING_RATE,
    ),
    "rm": (
        Panel("loss", _tv("loss")),
        Panel("pairwise accuracy", _tv("accuracy")),
        Panel("sign accuracy (cost > 0 ⇔ unsafe)", _tv("sign_accuracy")),
        Panel("AUROC unsafe vs safe", (Series(("eval/auroc",), "eval", eval=True),)),
        LEARNING_RATE,
    ),
    "sft": (
        Panel("loss", (Series(("train/loss",), "train"), Series(_EVAL_LOSS_TAGS, "eval", merge=True, eval=True))),
        Panel("eval perplexity", (Series(("eval/perplexity",), "eval", eval=True),
                                  Series(_EVAL_LOSS_TAGS, "exp(eval loss)", merge=True, transform=math.exp,
                                         eval=True))),
        LEARNING_RATE,
    ),
}
PANELS["distill"] = PANELS["sft"]


def stage_kind(stage: str, tags) -> str:
    """dpo | rm | sft | distill, by the metrics logged (then by the folder name); sft panels otherwise."""
    tags = set(tags)
    if tags & {"train/loss_total", "train/lambda", "train/loss_safety"}:
        return "dpo"
    if tags & {"train/sign_accuracy", "train/loss_rank", "eval/auroc"}:
        return "rm"
    name = stage.lower()
    for kind, marks in (("dpo", ("dpo", "aligned")), ("rm", ("_rm", "reward")), ("distill", ("distill",))):
        if any(m in name for m in marks):
            return kind
    return "sft"


def choose_panels(kind: str, scalars: dict[str, Points]) -> list[tuple[Panel, list[tuple[Series, Points]]]]:
    """The panels of `kind` that have data, each with the series (and points) it will draw."""
    chosen = []
    for panel in PANELS[kind]:
        lines = [(s, pts) for s in panel.series if (pts := s.points(scalars))]
        if not lines:
            continue
        if panel.needs_any and not any(scalars.get(t) for t in panel.needs_any):
            if all(len({v for _, v in pts}) <= 1 for _, pts in lines):  # e.g. λ of plain DPO: a constant
                continue
        chosen.append((panel, lines))
    return chosen


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(scalars: dict[str, Points], kind: str, title: str):
    """(matplotlib figure, panel names) or (None, []) when no panel has data."""
    chosen = choose_panels(kind, scalars)
    if not chosen:
        return None, []
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    cols = min(3, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    width, height = 4.2 * cols, 2.9 * rows
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, chosen):
        for series, pts in lines:
            steps, vals = zip(*pts)
            style = dict(marker="o", markersize=3, linestyle="--" if len(pts) > 1 else "none") if series.eval else {}
            if len(pts) == 1:  # one logged value (a short run): a line through one point would draw nothing
                style.update(marker="o", markersize=3)
            ax.plot(steps, vals, linewidth=1.2, label=series.label, **style)
        if panel.threshold and scalars.get(panel.threshold):
            ax.axhline(scalars[panel.threshold][-1][1], color="tab:red", linestyle=":", linewidth=1.2,
                       label="threshold")
        ax.set_title(panel.name, fontsize=9)
        ax.set_xlabel("step", fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        if len(ax.get_lines()) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    fig.suptitle(title)
    # Fixed margins (in inches) instead of tight_layout + bbox_inches="tight": every panel has the same small
    # labels, and measuring each text's extent twice was most of the report stage's time (7 s of 9 on the CI run).
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.15 / width, bottom=0.45 / height, top=1 - 0.6 / height,
                        wspace=0.3, hspace=0.6)
    return fig, [panel.name for panel, _ in chosen]


@dataclasses.dataclass
class CurvesPlot:
    stage: str
    kind: str
    path: Path
    panels: list[str]


def plot_stage_curves(scalars: dict[str, Points], stage: str, path: Path, kind: str | None = None) -> CurvesPlot | None:
    """Draw one stage's curves into `path` (PNG, written atomically); None when there is nothing to draw."""
    kind = kind or stage_kind(stage, scalars)
    fig, names = curves_figure(scalars, kind, f"training curves: {stage} ({kind})")
    if fig is None:
        return None
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # margins set in curves_figure: one drawing pass
    _plt().close(fig)
    return CurvesPlot(stage, kind, path, names)


# --------------------------------------------------------------------------- reading the event files
_EVENTS = re.compile(r"events\.out\.tfevents\.(\d+)\..*?(\d+)?$")


def _chronological(path: Path) -> tuple[int, int, str]:
    m = _EVENTS.match(path.name)
    return (int(m.group(1)), int(m.group(2) or 0), path.name) if m else (0, 0, path.name)


def read_scalars(log_dir: Path) -> dict[str, Points]:
    """Scalar series of every event file under `log_dir`, file by file in the order they were written (a
    resumed stage adds a file; a step logged twice keeps its last value). Reading files one at a time avoids
    TensorBoard's directory watcher and its INFO lines."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, dict[int, float]] = {}
    for f in sorted(Path(log_dir).rglob("events.out.tfevents.*"), key=_chronological):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            series.setdefault(tag, {}).update((e.step, e.value) for e in acc.Scalars(tag))
    return {t: sorted(v.items()) for t, v in series.items()}


def training_curves(logs_root: Path, out_dir: Path) -> list[CurvesPlot]:
    """`curves_<stage>.png` in `out_dir` for each stage folder of TensorBoard events under `logs_root`."""
    out = []
    logs_root = Path(logs_root)
    if not logs_root.is_dir():
        return out
    for stage in sorted(p for p in logs_root.iterdir() if p.is_dir()):
        try:
            scalars = read_scalars(stage)
        except Exception as err:  # noqa: BLE001 - a corrupt event file must not sink the report
            log.warning("training curves: cannot read %s (%s)", stage, err)
            continue
        plot = plot_stage_curves(scalars, stage.name, Path(out_dir) / f"curves_{stage.name}.png")
        if plot is not None:
            out.append(plot)
    return out
