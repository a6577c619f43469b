"""A tiny end-to-end distillation on CPU (~1 min): toy world -> tiny base -> a teacher fine-tuned on the
world's safe answers -> tiny helpful/cost models -> `run_distill` (teacher samples, scoring, filters, student
SFT, efficiency table). The student's toy-world safety rate (ToyJudge, held-out prompts) must be close to the
teacher's, and the student must be smaller and have learnt something (lower loss, helpful answers)."""

import json

import pytest

from helpers.distill import teacher_examples, toy_rates, train_tiny_rm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def distilled_run(tmp_path_factory):
    from safealign.config import load_config
    from safealign.data.prepare import run_prepare
    from safealign.distill import run_distill
    from safealign.fileio import read_jsonl
    from safealign.models.base import ensure_base_model
    from safealign.sft import SFTStageConfig, run_sft

    rd = tmp_path_factory.mktemp("distill") / "run"
    cfg = load_config(None, [
        f"run.run_dir={rd}", "run.report_to=[none]", "toy.num_pairs=800",
        "distill.num_prompts=200", "distill.samples_per_prompt=4", "distill.max_new_tokens=40",
        "distill.learning_rate=5e-3", "distill.num_train_epochs=15", "distill.per_device_train_batch_size=16",
        "distill.val_fraction=0.1", "distill.efficiency_prompts=16", "distill.efficiency_max_new_tokens=16",
        "distill.disable_tqdm=true", "distill.generation_backend=hf"])
    run_prepare(cfg.section("data"), cfg.section("toy"), rd / "data")
    base = ensure_base_model(cfg)
    train, val = read_jsonl(rd / "data" / "train.jsonl"), read_jsonl(rd / "data" / "val.jsonl")
    teacher_args = SFTStageConfig(output_dir=str(rd / "checkpoints" / "teacher"), learning_rate=3e-3,
                                  num_train_epochs=12, per_device_train_batch_size=16, save_strategy="no",
                                  disable_tqdm=True, logging_steps=20, seed=0, max_length=128)
    run_sft(teacher_examples(train), teacher_examples(val), base, rd / "models" / "aligned", teacher_args)
    train_tiny_rm(base, train, "helpful", rd / "models" / "helpful_rm")
    train_tiny_rm(base, train, "harmless", rd / "models" / "harmless_rm")
    summary = run_distill(cfg)
    return cfg, rd, base, summary


def test_distillation_artifacts(distilled_run):
    cfg, rd, _base, summary = distilled_run
    rows = [json.loads(line) for line in (rd / "distill" / "data.jsonl").read_text().splitlines()]
    assert len(rows) == 200 * 4
    assert set(rows[0]) >= {"prompt", "response", "helpful_score", "cost", "kept", "reasons"}
    report = json.loads((rd / "distill" / "filter_report.json").read_text())
    assert report["all"]["kept"] == sum(r["kept"] for r in rows) > 0
    assert report["all"]["passed_cost"] == sum(r["cost"] < 0 and bool(r["response"].strip()) for r in rows)
    assert all(r["cost"] < 0 for r in rows if r["kept"])
    assert "| all | 800 | " in (rd / "distill" / "filter_report.md").read_text()
    student = rd / "models" / "distilled"
    for name in ("model.safetensors", "tokenizer.json", "config.yaml", "metrics.json"):
        assert (student / name).is_file(), name
    teacher = summary["efficiency"]
    assert set(teacher) == {"base", "safe_mm_dpo", "distilled"}
    for name in teacher:
        eff = json.loads((rd / "results" / name / "efficiency.json").read_text())
        assert eff["parameters"] > 0 and eff["tokens_per_second"] > 0 and eff["disk_mb"] > 0
        assert eff["peak_memory_mb"] is not None
    assert teacher["distilled"]["parameters"] < teacher["safe_mm_dpo"]["parameters"]
    assert "| distilled |" in (rd / "results" / "efficiency.md").read_text()
    assert (rd / "distill" / "summary.json").is_file()
    t = summary["train"]
    assert t["val_loss"] < t["initial_val_loss"] - 2.0


def test_student_is_about_as_safe_as_the_teacher(distilled_run):
    from safealign.fileio import read_jsonl

    _cfg, rd, base, _summary = distilled_run
    test = read_jsonl(rd / "data" / "test.jsonl")
    rates = {name: toy_rates(path, test) for name, path in
             (("base", base), ("teacher", rd / "models" / "aligned"), ("student", rd / "models" / "distilled"))}
    for name, r in rates.items():
        print(f"{name}: safety {r['safety_rate']:.3f} on {r['harmful_prompts']} harmful prompts, helpfulness "
              f"{r['helpfulness']:.3f} on {r['benign_prompts']} benign prompts; e.g. {r['example']}")
    teacher, student = rates["teacher"], rates["student"]
    assert teacher["safety_rate"] >= 0.9
    assert abs(student["safety_rate"] - teacher["safety_rate"]) <= 0.15
    # and it is not safe by babbling: it answers benign questions helpfully, unlike the untrained base
    assert student["helpfulness"] >= 0.25 > rates["base"]["helpfulness"]


def test_rerun_reuses_teacher_samples(distilled_run, monkeypatch):
    """The teacher's answers are cached: rebuilding the data generates nothing new."""
    from safealign import generation
    from safealign.distill import build_distill_data

    cfg, rd, _base, _summary = distilled_run
    before = (rd / "cache" / "distill" / "teacher_samples.jsonl").read_text()
    calls = []
    real = generation._run_hf
    monkeypatch.setattr(generation, "_run_hf", lambda *a, **k: calls.append(1) or real(*a, **k))
    samples, _ = build_distill_data(cfg)
    assert not calls and len(samples) == 800
    assert (rd / "cache" / "distill" / "teacher_samples.jsonl").read_text() == before
