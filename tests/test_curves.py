"""Training curves by meaning: which panels each stage's figure has (from real TensorBoard event files, one of
them written by a real Safe-MM-DPO run), and the logged KL is the non-negative k3 the loss uses."""

import math

import pytest

from safealign.evaluation.curves import (PANELS, choose_panels, curves_figure, plot_stage_curves, read_scalars,
                                         stage_kind, training_curves)

DPO_ALL = ["total loss", "helpful loss L_H", "safety loss L_S", "KL loss (k3 per token)", "λ", "J_C vs threshold",
           "implicit reward margin, helpful pair", "implicit reward margin, safety pair", "accuracy, helpful pair",
           "accuracy, safety pair", "β_H / β_S", "perplexity of chosen answers", "learning rate"]
# what the old alphabetical pick spent panels on
NOISE = ["train/epoch", "eval/runtime", "eval/samples_per_second", "eval/steps_per_second",
         "train/model_preparation_time", "eval/reward_helpful_mean", "eval/delta_safety_mean", "train/grad_norm"]


def _write(folder, scalars: dict, suffix=""):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder), filename_suffix=suffix) as w:
        for tag, pts in scalars.items():
            for step, value in pts:
                w.add_scalar(tag, value, step)


def _ramp(n=5, start=1.0, slope=-0.1):
    return [(s, start + slope * s) for s in range(1, n + 1)]


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_sft_panels_skip_runtime_figures_and_show_perplexity(tmp_path):
    scalars = {"train/loss": _ramp(), "train/learning_rate": _ramp(slope=-0.01), "eval/loss": [(3, 2.0), (5, 1.5)],
               "train/initial_val_loss": [(0, 2.5)], "train/val_loss": [(5, 1.4)], **{t: _ramp() for t in NOISE}}
    _write(tmp_path / "sft", scalars)
    fig, names = curves_figure(read_scalars(tmp_path / "sft"), "sft", "t")
    assert names == ["loss", "eval perplexity", "learning rate"] == _titles(fig)
    ppl = fig.axes[1].get_lines()[0]
    assert list(ppl.get_xdata()) == [0, 3, 5]  # before, periodic, after: one series
    assert list(ppl.get_ydata()) == pytest.approx([math.exp(2.5), math.exp(2.0), math.exp(1.4)], rel=1e-6)


def test_rm_panels_by_dimension():
    from safealign.rm.metrics import reward_metrics

    harmless = reward_metrics([-1.0, -2.0], [1.0, 0.5], "harmless", [-1.0, 1.0], [0, 1])
    scalars = {f"train/{k}": _ramp() for k in [*harmless, "loss", "loss_rank", "loss_sign", "learning_rate"]}
    scalars.update({f"eval/{k}": [(5, 0.7)] for k in [*harmless, "loss", "runtime"]})
    assert stage_kind("harmless_rm", scalars) == "rm"
    assert [p.name for p, _ in choose_panels("rm", scalars)] == [
        "loss", "pairwise accuracy", "sign accuracy (cost > 0 ⇔ unsafe)", "AUROC unsafe vs safe", "learning rate"]
    helpful = reward_metrics([1.0], [0.0], "helpful")
    scalars = {f"train/{k}": _ramp() for k in [*helpful, "loss", "loss_rank", "learning_rate"]}
    assert [p.name for p, _ in choose_panels("rm", scalars)] == ["loss", "pairwise accuracy", "learning rate"]


def test_plain_dpo_has_no_lambda_or_cost_panels():
    from safealign.dpo.trainer import METRIC_KEYS

    scalars = {f"train/{k}": _ramp() for k in METRIC_KEYS}
    scalars.update({"train/lambda": [(s, 1.0) for s in range(1, 6)], "train/learning_rate": _ramp()})
    names = [p.name for p, _ in choose_panels(stage_kind("dpo_dpo", scalars), scalars)]
    assert "λ" not in names and "J_C vs threshold" not in names and names[0] == "total loss"


def test_a_resumed_stage_keeps_the_last_value_of_a_step(tmp_path):
    _write(tmp_path, {"train/loss": [(1, 3.0), (2, 2.0)]}, suffix=".a")
    _write(tmp_path, {"train/loss": [(2, 1.5), (3, 1.0)]}, suffix=".b")  # written later: resumed at step 2
    assert read_scalars(tmp_path)["train/loss"] == [(1, 3.0), (2, 1.5), (3, 1.0)]


def test_training_curves_writes_one_png_per_stage(tmp_path):
    logs = tmp_path / "logs"
    _write(logs / "sft", {"train/loss": _ramp()})
    _write(logs / "helpful_rm", {"train/loss": _ramp(), "train/accuracy": _ramp(), "eval/accuracy": [(5, 0.6)]})
    (logs / "sft.log").write_text("the stage's text log sits beside its event folder\n")
    (logs / "empty").mkdir()
    plots = {p.stage: p for p in training_curves(logs, tmp_path / "out")}
    assert sorted(plots) == ["helpful_rm", "sft"]
    assert plots["helpful_rm"].kind == "rm" and plots["helpful_rm"].panels == ["loss", "pairwise accuracy"]
    assert plots["sft"].panels == ["loss"] and plots["sft"].path == tmp_path / "out" / "curves_sft.png"
    assert plots["sft"].path.stat().st_size > 1000


def test_the_report_draws_with_these_modules_only():
    """The old alphabetical `training_curves` and the bar chart that hid 0.0 are gone from evaluation.plots."""
    from safealign.evaluation import plots, report

    assert not any(hasattr(plots, name) for name in ("training_curves", "read_scalars", "safety_bar_chart"))
    assert report.training_curves is training_curves and report.safety_bar_chart.__module__ == "safealign.evaluation.bars"


def test_every_dpo_panel_reads_a_metric_the_trainer_logs():
    from safealign.dpo.trainer import METRIC_KEYS

    logged = {*METRIC_KEYS, "lambda", "jc", "cost_threshold", "learning_rate", "loss"}
    for panel in PANELS["dpo"]:
        for series in panel.series:
            assert any(t.split("/", 1)[1] in logged for t in series.tags), (panel.name, series.tags)


@pytest.fixture(scope="module")
def judges(tmp_path_factory, tiny_base):
    from helpers.dpo import make_run

    root = tmp_path_factory.mktemp("judges")
    make_run(root, tiny_base)
    return root


def test_a_real_safe_mm_dpo_run_plots_every_panel_and_logs_k3(tmp_path, tiny_base, judges):
    from helpers.dpo import make_cfg, make_run

    from safealign.config import Config
    from safealign.dpo.train import build_trainer

    make_run(tmp_path, tiny_base, rm_root=judges)
    cfg = make_cfg(tmp_path, tiny_base, judges, max_steps=4, save_strategy="no", eval_strategy="steps",
                   eval_steps=2, cost_threshold=0.02, kl_coeff=0.1)
    trainer, _ = build_trainer(Config(dict(cfg.raw, run=dict(cfg.raw["run"], report_to=["tensorboard"]))))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss_kl" in h]
    assert logs and all(h["kl_divergence"] >= 0 for h in logs)
    assert all(h["kl_divergence"] == pytest.approx(h["loss_kl"]) for h in logs)  # what the loss uses
    assert any(h["kl_k1"] != 0 for h in logs)  # the plain log ratio, logged under its own name
    train_logs = [h for h in logs if "jc" in h]
    assert len(train_logs) == 4 and all(h["cost_threshold"] == 0.02 for h in train_logs)
    plot = plot_stage_curves(read_scalars(tmp_path / "logs" / "dpo"), "dpo", tmp_path / "curves_dpo.png")
    assert plot.kind == "dpo" and plot.panels == DPO_ALL
