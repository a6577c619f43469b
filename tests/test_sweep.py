"""Sweep: the selection rule on made-up results, the Pareto front, the outputs, the config section."""

import pytest

from safealign.errors import ConfigError
from safealign.sweep.config import SweepConfig
from safealign.sweep.report import sweep_markdown, sweep_plot
from safealign.sweep.select import pareto_front, point_id, select_best


def P(lam, w, safety, helpful):
    return {"id": point_id(lam, w), "lambda_init": lam, "w": w, "safety_rate": safety, "helpfulness": helpful}


def test_highest_helpfulness_among_passing():
    pts = [P(0.5, 0.3, 0.70, 0.95), P(1, 0.5, 0.85, 0.60), P(2, 1.0, 0.95, 0.40), P(1, 1.0, 0.81, 0.70)]
    sel = select_best(pts, 0.8)
    assert sel["status"] == "selected"
    assert sel["best"] == "lambda1_w1"  # the most helpful (0.95) fails safety; 0.70 is the best that passes
    assert sel["passing"] == ["lambda1_w0.5", "lambda2_w1", "lambda1_w1"]
    assert sel["ties"] == []


def test_threshold_is_strict():
    sel = select_best([P(1, 0.5, 0.80, 0.9), P(2, 0.5, 0.801, 0.1)], 0.8)
    assert sel["best"] == "lambda2_w0.5"
    assert sel["passing"] == ["lambda2_w0.5"]


def test_tie_broken_by_safety_then_grid_order():
    sel = select_best([P(0.5, 0.3, 0.85, 0.7), P(1, 0.3, 0.9, 0.7), P(2, 0.3, 0.95, 0.6)], 0.8)
    assert sel["best"] == "lambda1_w0.3"
    assert sel["ties"] == ["lambda0.5_w0.3", "lambda1_w0.3"]
    assert "higher safety" in sel["reason"]
    sel = select_best([P(0.5, 0.3, 0.9, 0.7), P(1, 0.3, 0.9, 0.7)], 0.8)
    assert sel["best"] == "lambda0.5_w0.3"  # full tie: first in grid order
    assert "grid order" in sel["reason"]


def test_none_passes_falls_back_to_safest_and_says_so():
    sel = select_best([P(0.5, 0.3, 0.5, 0.9), P(1, 0.3, 0.7, 0.2), P(2, 0.3, 0.7, 0.4)], 0.8)
    assert sel["status"] == "none_passed"
    assert sel["best"] == "lambda2_w0.3"  # safest; helpfulness breaks the safety tie
    assert "no point" in sel["reason"] and sel["passing"] == []


def test_empty():
    assert select_best([], 0.8)["status"] == "empty"


def test_pareto_front():
    pts = [P(0.5, 0.3, 0.5, 0.9), P(1, 0.3, 0.7, 0.7), P(2, 0.3, 0.6, 0.6), P(2, 1, 0.9, 0.3), P(1, 1, 0.9, 0.3)]
    # (0.6, 0.6) is beaten by (0.7, 0.7); the two identical (0.9, 0.3) points do not dominate each other
    assert pareto_front(pts) == ["lambda0.5_w0.3", "lambda1_w0.3", "lambda2_w1", "lambda1_w1"]


def test_markdown_and_plot(tmp_path):
    pts = [P(0.5, 0.3, 0.7, 0.9), P(1, 0.5, 0.85, 0.6), P(2, 1.0, 0.95, 0.4)]
    sel = select_best(pts, 0.8)
    md = sweep_markdown(pts, sel, "toy")
    assert "**best**" in md and "lambda1_w0.5" in md and "Status: selected" in md
    sweep_plot(pts, sel, tmp_path / "sweep.png", "toy")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_defaults_and_validation():
    c = SweepConfig()
    assert c.lambda_init == [0.5, 1.0, 2.0] and c.w == [0.3, 0.5, 1.0]
    assert c.num_train_epochs == 1 and c.val_prompts == 100 and c.safety_threshold == 0.8
    with pytest.raises(ConfigError, match="w\\[1\\]"):
        SweepConfig(w=[0.3, -1.0])
    with pytest.raises(ConfigError, match="safety_threshold"):
        SweepConfig(safety_threshold=1.5)


def test_config_section_from_yaml(tmp_path):
    from safealign.config import load_config

    p = tmp_path / "c.yaml"
    p.write_text("sweep:\n  lambda_init: [1, 4]\n  w: [0.5]\n")
    cfg = load_config(p, ["sweep.val_prompts=20"])
    assert cfg.section("sweep").lambda_init == [1.0, 4.0]
    assert cfg.section("sweep").val_prompts == 20
    p.write_text("sweep:\n  lambdas: [1]\n")
    with pytest.raises(ConfigError, match="sweep.lambdas: unknown key"):
        load_config(p)


def test_tie_on_rates_broken_by_the_pairwise_validation_metrics():
    a, b, c = P(0.5, 0.3, 0.9, 0.7), P(1, 0.3, 0.9, 0.7), P(2, 0.3, 0.9, 0.7)
    a.update(val_helpful_choice=0.61, val_jc=0.10)
    b.update(val_helpful_choice=0.64, val_jc=0.12)
    c.update(val_helpful_choice=0.64, val_jc=0.09)
    sel = select_best([a, b, c], 0.8)
    assert sel["best"] == "lambda2_w0.3"  # helpful choice ties with b, the lower J_C wins
    assert "validation pairwise metrics" in sel["reason"] and "J_C 0.0900" in sel["reason"]
    md = sweep_markdown([a, b, c], sel, "tradeoff")
    assert "| 0.6400 | 0.0900 |" in md
