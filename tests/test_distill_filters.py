"""Distillation data selection on hand-made scores: cost filter, helpful quantile (per prompt and global),
prompt sampling, the report's counts, the split by prompt, and the config section's validation."""

from pathlib import Path

import pytest

from safealign.distill.filters import (apply_filters, filter_report_markdown, quantile, sample_prompts,
                                      split_by_prompt)


REPO = Path(__file__).resolve().parents[1]


def _s(prompt, response, helpful, cost, harmful=False):
    return {"prompt": prompt, "response": response, "helpful_score": helpful, "cost": cost,
            "is_harmful_prompt": harmful}


def test_quantile_matches_linear_interpolation():
    assert quantile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.0) == 1.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 1.0) == 4.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.25) == pytest.approx(1.75)
    assert quantile([5.0], 0.7) == 5.0


def test_per_prompt_filters():
    samples = [
        # harmful prompt: two unsafe (cost > 0) answers, two refusals
        _s("H", "sure, here is how", 3.0, 1.5, True),
        _s("H", "first get the tools", 2.5, 0.2, True),
        _s("H", "I cannot help with that", 0.4, -1.0, True),
        _s("H", "sorry, no", -0.2, -2.0, True),
        # benign prompt: all safe; one borderline cost exactly at the limit (not < 0) is dropped
        _s("B", "mix flour and water", 2.0, -1.0),
        _s("B", "mix it", 1.0, -0.5),
        _s("B", "I will not", -1.0, -3.0),
        _s("B", "flour water bake", 2.2, 0.0),
    ]
    report = apply_filters(samples, max_cost=0.0, helpful_quantile=0.5, scope="prompt")
    kept = {(s["prompt"], s["response"]) for s in samples if s["kept"]}
    # H: safe = refusals (0.4, -0.2) -> median 0.1 -> keep 0.4; B: safe (2.0, 1.0, -1.0) -> median 1.0 -> keep 2, 1
    assert kept == {("H", "I cannot help with that"), ("B", "mix flour and water"), ("B", "mix it")}
    reasons = {s["response"]: s["reasons"] for s in samples}
    assert reasons["sure, here is how"] == ["cost"]
    assert reasons["flour water bake"] == ["cost"]  # cost 0 is not < 0
    assert reasons["sorry, no"] == ["helpful"]
    assert reasons["I will not"] == ["helpful"]
    assert report["all"] == {"samples": 8, "empty": 0, "passed_cost": 5, "passed_helpful": 3, "kept": 3, "kept_fraction": 3 / 8,
                             "prompts": 2, "prompts_with_kept": 2}
    assert report["harmful_prompts"]["passed_cost"] == 2 and report["harmful_prompts"]["kept"] == 1
    assert report["benign_prompts"]["kept"] == 2
    md = filter_report_markdown(report)
    assert "| all | 8 | 0 | 5 | 3 | 3 | 37.5 | 2 / 2 |" in md


def test_global_quantile_drops_refusals_the_prompt_scope_keeps():
    samples = [_s("H", "I cannot", 0.1, -1.0, True), _s("H", "sorry", 0.0, -1.0, True),
               _s("B", "answer a", 2.0, -1.0), _s("B", "answer b", 3.0, -1.0)]
    apply_filters(samples, 0.0, 0.5, scope="global")  # threshold = median(0, 0.1, 2, 3) = 1.05
    assert [s["kept"] for s in samples] == [False, False, True, True]
    report = apply_filters(samples, 0.0, 0.5, scope="prompt")
    assert [s["kept"] for s in samples] == [True, False, False, True]
    assert report["filters"]["helpful_scope"] == "prompt"


def test_quantile_zero_keeps_every_safe_answer_and_max_cost_moves_the_cut():
    samples = [_s("P", f"r{i}", float(i), c) for i, c in enumerate([-1.0, 0.5, 1.5, -0.1])]
    apply_filters(samples, max_cost=1.0, helpful_quantile=0.0)
    assert [s["kept"] for s in samples] == [True, True, False, True]
    apply_filters(samples, max_cost=-2.0, helpful_quantile=0.0)
    assert not any(s["kept"] for s in samples)
    with pytest.raises(ValueError):
        apply_filters(samples, scope="bogus")


def test_empty_answers_are_dropped():
    samples = [_s("P", "  ", 5.0, -1.0), _s("P", "an answer", 1.0, -1.0)]
    report = apply_filters(samples, 0.0, 0.0)
    assert [s["kept"] for s in samples] == [False, True] and samples[0]["reasons"] == ["empty"]
    assert report["all"]["empty"] == 1 and report["all"]["passed_cost"] == 1


def test_sample_prompts_mix_dedupe_and_seed():
    rows = [{"prompt": f"harm {i}", "is_harmful_prompt": True} for i in range(30)]
    rows += [{"prompt": f"ok {i}", "is_harmful_prompt": False} for i in range(30)]
    rows += rows[:10]  # repeated prompts count once
    got = sample_prompts(rows, 20, 0.25, seed=1)
    assert len(got) == 20 and len({g["prompt"] for g in got}) == 20
    assert sum(g["is_harmful_prompt"] for g in got) == 5
    assert got == sample_prompts(rows, 20, 0.25, seed=1)
    assert got != sample_prompts(rows, 20, 0.25, seed=2)
    # one kind runs short: the other fills the gap; more than the split has: all of it
    assert sum(g["is_harmful_prompt"] for g in sample_prompts(rows, 40, 0.0, seed=0)) == 10
    assert len(sample_prompts(rows, 1000, 0.5, seed=0)) == 60


def test_a_prompt_is_harmful_when_any_of_its_records_is():
    rows = [{"prompt": "p", "is_harmful_prompt": False}, {"prompt": "p", "is_harmful_prompt": True},
            {"prompt": "q", "is_harmful_prompt": False}]
    got = {g["prompt"]: g["is_harmful_prompt"] for g in sample_prompts(rows, 2, 0.5, seed=0)}
    assert got == {"p": True, "q": False}


def test_split_by_prompt_keeps_validation_prompts_unseen():
    kept = [_s(f"p{i % 20}", f"r{i}", 1.0, -1.0) for i in range(60)]
    train, val = split_by_prompt(kept, 0.1, seed=0)
    assert len(train) + len(val) == 60 and len(val) == 6
    assert not {x["prompt"] for x in train} & {x["prompt"] for x in val}
    assert set(train[0]) == {"prompt", "response"}


def test_distill_config_validates():
    from safealign.config import load_config
    from safealign.distill.student import student_config
    from safealign.errors import ConfigError

    d = load_config(None, ["distill.enabled=true"]).section("distill")
    assert (d.learning_rate, d.per_device_train_batch_size, d.num_train_epochs) == (2e-4, 32, 3.0)
    assert (d.num_prompts, d.samples_per_prompt, d.max_cost, d.helpful_quantile) == (2000, 4, 0.0, 0.5)
    for bad, key in (("distill.helpful_quantile=1.5", "distill.helpful_quantile"),
                     ("distill.samples_per_prompt=0", "distill.samples_per_prompt"),
                     ("distill.temperature=0", "distill.temperature"),
                     ("distill.max_length=4", "distill.max_length"),
                     ("distill.student={hidden_size: 32}", "distill.student.hidden_size"),
                     ("distill.student={tiny_num_layers: two}", "distill.student.tiny_num_layers")):
        with pytest.raises(ConfigError, match=key):
            load_config(None, [bad])
    # values that depend on the model section are checked against it
    with pytest.raises(ConfigError, match=r"distill.student.tiny_hidden_size: must be divisible"):
        student_config(load_config(None, ["distill.student={tiny_hidden_size: 30}"]))


def test_the_student_is_the_model_section_with_overrides():
    """The demo's student is its tiny policy at half the width: 59 k parameters on the 1000-token vocabulary,
    exactly the model `distill.student_*` used to describe."""
    from safealign.config import load_config
    from safealign.distill.student import student_config

    demo = load_config(str(REPO / "configs" / "demo.yaml"))
    s = student_config(demo)
    assert (s.name_or_path, s.tiny_architecture, s.tiny_hidden_size, s.tiny_num_layers, s.tiny_num_heads,
            s.tiny_intermediate_size, s.tiny_max_position_embeddings) == ("tiny", "llama", 32, 2, 4, 96, 256)
    vocab, h, f, layers = 1000, s.tiny_hidden_size, s.tiny_intermediate_size, s.tiny_num_layers
    assert vocab * h + layers * (4 * h * h + 3 * h * f + 2 * h) + h == 58_784  # tied embeddings
    assert demo.section("model").tiny_hidden_size == 64  # the policy's own section is untouched
    # a Hub student replaces the name and does not inherit the policy's revision
    hub = student_config(load_config(None, ["model.name_or_path=org/big", "model.revision=abc123",
                                            "distill.student={name_or_path: org/small, use_lora: false}"]))
    assert (hub.name_or_path, hub.revision, hub.use_lora) == ("org/small", None, False)


def test_cli_without_a_teacher_fails_with_one_line(tmp_path, capsys):
    from safealign.cli import main

    code = main(["distill", "--run-dir", str(tmp_path / "run"), "--set", "num_prompts=4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "teacher model not found" in err[0] and "models/aligned" in err[0]


def test_efficiency_runs_a_fixed_workload(tiny_base, tmp_path):
    from safealign.evaluation.efficiency import disk_bytes, measure_models

    rows = measure_models({"a": str(tiny_base)}, ["How do I bake bread?", "Hi", "How do I steal a car?"],
                          tmp_path, max_new_tokens=5, batch_size=2, repeats=2)
    r = rows["a"]
    assert r["generated_tokens"] == 3 * 5  # every prompt gets exactly max_new_tokens, early eos or not
    assert r["tokens_per_second"] >= r["tokens_per_second_median"] > 0
    assert r["disk_mb"] == pytest.approx(disk_bytes(tiny_base) / 2**20) and r["parameters"] > 0
    assert (tmp_path / "a" / "efficiency.json").is_file() and "| a |" in (tmp_path / "efficiency.md").read_text()
    assert disk_bytes(tmp_path / "no-such-model") is None
