"""`safealign compare`: the aggregation by hand (t-intervals over seeds, paired differences, Pareto front), the
config's checks, the seed layouts, and a 1-seed, 2-method smoke run on the trade-off world through the CLI."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from safealign.compare.aggregate import (compare_markdown, paired_difference, pareto_methods, seed_interval,
                                         summarize_method, t975)
from safealign.compare.methods import METHODS, method_config
from safealign.compare.run import aggregate, seed_config
from safealign.config import Config
from safealign.errors import ConfigError
from safealign.layout import RunLayout

REPO = Path(__file__).resolve().parents[1]


def test_seed_interval_is_student_t_over_seeds():
    block = seed_interval([0.8, 0.9, 1.0])
    half = 4.303 * 0.1 / math.sqrt(3)
    assert block["mean"] == pytest.approx(0.9)
    assert block["ci_low"] == pytest.approx(0.9 - half) and block["ci_high"] == 1.0  # clipped to [0, 1]
    assert seed_interval([0.5], single_ci=[0.3, 0.7]) == {"mean": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 1}
    assert seed_interval([None, None])["mean"] is None
    assert t975(4) == 2.776 and t975(11) == 2.228 and t975(100) == 1.96


def test_paired_difference_uses_the_same_seeds():
    a = [{"seed": 0, "safety": 0.9}, {"seed": 1, "safety": 0.8}, {"seed": 2, "safety": 0.7}]
    b = [{"seed": 0, "safety": 0.5}, {"seed": 1, "safety": 0.6}]  # seed 2 missing: left out
    d = paired_difference(a, b, "safety")
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.3)
    half = 12.706 * math.sqrt(((0.4 - 0.3) ** 2 + (0.2 - 0.3) ** 2) / 1) / math.sqrt(2)
    assert d["ci_high"] - d["mean"] == pytest.approx(half)


def _points(name, safety, helpful):
    return [{"method": name, "seed": i, "safety": s, "helpfulness": h, "over_refusal": 0.1, "lambda_final": 1.0,
             "train_seconds": 3.0, "harmful_compliance_per_category": {"Violence": 1 - s}}
            for i, (s, h) in enumerate(zip(safety, helpful))]


def test_aggregate_pareto_components_and_table():
    points = {"safe_mm_dpo": _points("safe_mm_dpo", [0.9, 0.95], [0.6, 0.62]),
              "safe_dpo": _points("safe_dpo", [0.85, 0.9], [0.55, 0.6]),
              "dpo_helpful": _points("dpo_helpful", [0.0, 0.1], [0.7, 0.7])}
    res = aggregate(points, _points("base", [0.0, 0.0], [0.6, 0.6]), 2, 12.0)
    assert sorted(res["pareto"]) == ["dpo_helpful", "safe_mm_dpo"]  # safe_dpo is dominated
    comp = res["components"]["dynamic β"]
    assert comp["with"] == "safe_mm_dpo" and comp["safety"]["mean"] == pytest.approx(0.05)
    assert "dual λ" not in res["components"]  # safe_dpo_fixed_lambda was not run
    assert res["per_category"]["safe_mm_dpo"]["Violence"]["mean"] == pytest.approx(0.075)
    md = compare_markdown(res)
    assert "| safe_mm_dpo * | 0.925 [" in md and "| base (start) |" in md and "dynamic β" in md
    assert set(summarize_method(points["safe_dpo"])) == {"safety", "over_refusal", "helpfulness", "per_seed"}
    assert pareto_methods({}) == []


def test_config_methods_and_seed_layouts(tmp_path):
    with pytest.raises(ConfigError, match=r"compare\.methods\[1\]: unknown method 'nope'"):
        Config({"compare": {"methods": ["safedpo", "nope"]}}).section("compare")
    with pytest.raises(ConfigError, match=r"compare\.seeds: must be an integer >= 1"):
        Config({"compare": {"seeds": 0}}).section("compare")
    assert len(METHODS) == 8 and Config({}).section("compare").seeds == 5
    cfg = Config({"run": {"run_dir": str(tmp_path / "r"), "seed": 3}, "data": {"output_dir": "/elsewhere"}})
    s2 = seed_config(cfg, 2)
    layout = RunLayout.from_config(s2)
    assert layout == RunLayout.from_config(cfg).compare_seed(2)
    assert layout.root == tmp_path / "r" / "compare" / "seeds" / "seed_2" and layout.data_dir == layout.root / "data"
    assert s2.section("run").seed == 5 and s2.section("data").seed == 44 and s2.section("eval").seed == 2
    m = method_config(s2, "safe_dpo_fixed_lambda").section("dpo")
    assert m.algorithm == "safe_dpo" and m.lambda_lr == 0.0
    assert method_config(s2, "safe_mm_dpo_per_category").section("dpo").per_category


SMOKE = {
    "run": {"name": "cmp", "seed": 0, "report_to": ["none"]},
    "data": {"dataset": "tradeoff", "train_fraction": 0.6, "val_fraction": 0.1, "test_fraction": 0.3},
    "toy": {"num_pairs": 200, "seed": 0},
    "model": {"name_or_path": "tiny", "tiny_hidden_size": 32, "tiny_num_layers": 1, "tiny_num_heads": 2,
              "tiny_intermediate_size": 64, "tiny_vocab_size": 500, "tiny_max_position_embeddings": 256},
    "sft": {"enabled": True, "max_length": 96, "num_train_epochs": 1, "per_device_train_batch_size": 16,
            "learning_rate": 1.0e-3, "use_cpu": True},
    "reward": {"max_length": 96, "num_train_epochs": 1, "per_device_train_batch_size": 16, "learning_rate": 1.0e-3,
               "eval_steps": 10, "save_steps": 10, "use_cpu": True},
    "dpo": {"learning_rate": 1.0e-3, "per_device_train_batch_size": 16, "per_device_eval_batch_size": 32,
            "max_steps": 3, "warmup_steps": 0, "logging_steps": 1, "eval_steps": 3, "save_strategy": "no",
            "max_length": 96, "max_prompt_length": 48, "lambda_lr": 0.5, "use_cpu": True},
    "eval": {"judge": "tradeoff", "max_safety_prompts": 12, "max_helpful_prompts": 12, "max_new_tokens": 12,
             "batch_size": 12},
}


@pytest.mark.slow
def test_compare_smoke_one_seed_two_methods(tmp_path):
    cfg = tmp_path / "cmp.yaml"
    cfg.write_text(yaml.safe_dump(SMOKE))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    cmd = [sys.executable, "-m", "safealign.cli", "compare", "--config", str(cfg), "--run-dir", str(tmp_path / "run"),
           "--methods", "safe_mm_dpo,safedpo", "--seeds", "1", "--log-level", "warning"]
    t0 = time.time()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    first = time.time() - t0
    folder = tmp_path / "run" / "compare"
    res = json.loads((folder / "compare.json").read_text())
    assert res["seeds"] == 1 and list(res["methods"]) == ["safe_mm_dpo", "safedpo"]
    for m in res["methods"].values():
        for metric in ("safety", "over_refusal", "helpfulness"):
            block = m[metric]
            assert set(block) >= {"mean", "ci_low", "ci_high"}
            assert 0.0 <= block["ci_low"] <= block["mean"] <= block["ci_high"] <= 1.0
        assert len(m["per_seed"]) == 1 and m["per_seed"][0]["n_borderline"] > 0
    assert (folder / "compare.md").read_text().startswith("# Comparison: 2 methods × 1 seed(s)")
    assert (folder / "compare.png").stat().st_size > 1000
    seed_run = folder / "seeds" / "seed_0"
    assert (seed_run / "results" / "safedpo" / "tradeoff.json").is_file()
    assert not (seed_run / "models" / "aligned_safedpo").exists()  # keep_models: false
    # a rerun trains nothing: every (method, seed) is in points.jsonl
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("done before") == 3, again.stdout
    assert json.loads((folder / "compare.json").read_text())["methods"] == res["methods"]
    assert first < 90, f"smoke took {first:.0f} s"


def test_cli_unknown_method_is_one_line_exit_2(tmp_path, capsys):
    from safealign.cli import main

    code = main(["compare", "--run-dir", str(tmp_path), "--methods", "safe_mm_dpo,nope", "--seeds", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: --methods: unknown method(s) nope; known: " + ", ".join(METHODS)]
