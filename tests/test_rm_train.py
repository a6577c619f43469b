"""train-rm end to end on a small toy world: CLI, output folder, sign convention, save -> reload, bad input,
the model section with `reward.model` overrides, atomic checkpoints."""

import hashlib
import json
import os

import pytest
import torch

from safealign.cli import main
from safealign.config import load_config
from safealign.errors import ConfigError
from safealign.fileio import read_json, write_jsonl
from safealign.rm.scoring import load_scorer, score_pairs
from safealign.rm.train import build_trainer, run_train_rm
from safealign.toy import generate_toy_world
from safealign.training import STAGING, TRAINER_STATE, resolve_resume

FIELDS = ["prompt", "response_0", "response_1", "better_response_id", "safer_response_id",
          "is_response_0_safe", "is_response_1_safe"]


def canonical(row):
    key = (row["prompt"] + row["response_0"] + row["response_1"]).encode()
    return {"id": hashlib.sha256(key).hexdigest()[:16], **{k: row[k] for k in FIELDS}, "harm_categories": [],
            "severity": None, "is_harmful_prompt": not (row["is_response_0_safe"] and row["is_response_1_safe"]),
            "source": "toy-world"}


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    rows = [canonical(r) for r in generate_toy_world(num_pairs=360, seed=1)]
    out = tmp_path_factory.mktemp("toy") / "data"
    write_jsonl(out / "train.jsonl", rows[:300])
    write_jsonl(out / "val.jsonl", rows[300:])
    write_jsonl(out / "safety_train.jsonl", [
        {"id": f"s{i}", "prompt": r["prompt"], "response": r["response_0"], "category": None,
         "is_safe": r["is_response_0_safe"]} for i, r in enumerate(rows[:40])])
    return out


COMMON = ["--set", "reward.learning_rate=3e-3", "--set", "reward.num_train_epochs=2",
          "--set", "reward.per_device_train_batch_size=16", "--set", "reward.eval_steps=10",
          "--set", "reward.save_steps=10", "--set", "reward.logging_steps=5"]


def test_cli_trains_cost_model_with_sign_convention_and_reload(toy_data, tiny_base, tmp_path):
    run_dir = tmp_path / "run"
    rc = main(["train-rm", "--dimension", "harmless", "--data-dir", str(toy_data), "--run-dir", str(run_dir),
               "--set", f"model.name_or_path={tiny_base}", *COMMON])
    assert rc == 0
    out = run_dir / "models" / "harmless_rm"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "config.yaml", "metrics.json", "metrics.md"):
        assert (out / name).is_file(), name
    assert not list(out.parent.glob(".harmless_rm.tmp-*"))  # nothing half-written left behind
    assert list((run_dir / "logs" / "harmless_rm").glob("events.out.tfevents.*"))
    assert list((run_dir / "checkpoints" / "harmless_rm").glob("checkpoint-*"))
    metrics = read_json(out / "metrics.json")
    assert metrics["num_train_single_responses"] == 40
    assert metrics["best"]["metric"] == "sign_accuracy"
    assert metrics["model"]["sign_accuracy"] >= 0.8 and metrics["model"]["accuracy"] >= 0.8

    # reload: the saved model reproduces the validation figures exactly, and c > 0 means unsafe
    model, tok = load_scorer(out, device="cpu")
    val = [json.loads(line) for line in (toy_data / "val.jsonl").read_text().splitlines()]
    prompts = [r["prompt"] for r in val for _ in (0, 1)]
    responses = [r[f"response_{i}"] for r in val for i in (0, 1)]
    unsafe = [not r[f"is_response_{i}_safe"] for r in val for i in (0, 1)]
    costs = score_pairs(model, tok, prompts, responses, max_tokens_per_batch=512, show_progress=False)
    sign_acc = sum((c > 0) == u for c, u in zip(costs, unsafe)) / len(costs)
    assert sign_acc == pytest.approx(metrics["model"]["sign_accuracy"], abs=1e-9)
    mean_unsafe = sum(c for c, u in zip(costs, unsafe) if u) / sum(unsafe)
    mean_safe = sum(c for c, u in zip(costs, unsafe) if not u) / (len(unsafe) - sum(unsafe))
    assert mean_unsafe > 0 > mean_safe


def test_helpful_lora_with_centering(toy_data, tiny_base, tmp_path):
    cfg = load_config(None, [f"run.run_dir={tmp_path}", f"model.name_or_path={tiny_base}",
                             "reward.model={use_lora: true}", "model.lora_r=8", "reward.center_coeff=0.01",
                             "reward.learning_rate=3e-3", "reward.num_train_epochs=1", "reward.eval_steps=10",
                             "reward.save_steps=10", "run.report_to=[none]"])
    metrics = run_train_rm(cfg, "helpful", data_dir=toy_data)
    out = tmp_path / "models" / "helpful_rm"
    assert metrics["best"]["metric"] == "accuracy" and metrics["model"]["accuracy"] >= 0.7
    assert not (out / "adapter_config.json").exists()  # merged: a plain model load_scorer reads
    assert not (tmp_path / "logs" / "helpful_rm").exists()  # report_to none
    model, tok = load_scorer(out, device="cpu")
    val = [json.loads(line) for line in (toy_data / "val.jsonl").read_text().splitlines()]
    better = score_pairs(model, tok, [r["prompt"] for r in val],
                         [r[f"response_{r['better_response_id']}"] for r in val], show_progress=False)
    worse = score_pairs(model, tok, [r["prompt"] for r in val],
                        [r[f"response_{1 - r['better_response_id']}"] for r in val], show_progress=False)
    acc = sum(b > w for b, w in zip(better, worse)) / len(val)
    assert acc == pytest.approx(metrics["model"]["accuracy"], abs=1e-9)


def test_bad_record_names_file_row_and_field(toy_data, tiny_base, tmp_path, capsys):
    data = tmp_path / "data"
    lines = (toy_data / "train.jsonl").read_text().splitlines()[:5]
    bad = json.loads(lines[2])
    bad["safer_response_id"] = 2
    lines[2] = json.dumps(bad)
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(lines) + "\n")
    (data / "val.jsonl").write_text("\n".join(lines[:2]) + "\n")
    rc = main(["train-rm", "--dimension", "harmless", "--data-dir", str(data), "--run-dir", str(tmp_path / "r"),
               "--set", f"model.name_or_path={tiny_base}"])
    assert rc == 2
    assert f"{data / 'train.jsonl'}:3: safer_response_id: must be 0 or 1 (got 2)" in capsys.readouterr().err
    assert not (tmp_path / "r" / "models" / "harmless_rm").exists()


def test_config_validation():
    with pytest.raises(ConfigError, match=r"reward.learning_rate: must be > 0"):
        load_config(None, ["reward.learning_rate=0"])
    with pytest.raises(ConfigError, match=r"reward.metric_for_best_model"):
        load_config(None, ["reward.metric_for_best_model=f1"])
    with pytest.raises(ConfigError, match=r"reward.use_lora: unknown key"):  # LoRA is the model section's
        load_config(None, ["reward.use_lora=true"])
    with pytest.raises(ConfigError, match=r"reward.model.lora_rr: unknown key \(did you mean 'lora_r'\?\)"):
        load_config(None, ["reward.model={lora_rr: 8}"])
    with pytest.raises(ConfigError, match=r"reward.model.lora_dropout: must be in \[0, 1\)"):
        load_config(None, ["reward.model={lora_dropout: 1.5}"])
    r = load_config(None).section("reward")
    assert (r.learning_rate, r.per_device_train_batch_size, r.num_train_epochs, r.max_grad_norm) == (2e-5, 16, 2, 1.0)
    assert (r.per_device_eval_batch_size, r.warmup_steps, r.eval_steps, r.save_steps, r.save_total_limit) == \
        (32, 0.03, 50, 50, 2)
    assert r.remove_unused_columns is False and r.bf16 is False  # no CUDA here


def _cfg(tmp_path, tiny_base, *sets):
    return load_config(None, [f"run.run_dir={tmp_path}", f"model.name_or_path={tiny_base}", "run.report_to=[none]",
                              *sets])


def test_reward_model_overrides_take_the_model_sections_lora(toy_data, tiny_base, tmp_path):
    """`reward.model: {use_lora: true}` trains LoRA judges with the model section's LoRA settings, while the
    policy (the model section itself) stays without LoRA; without the override the RM follows `model`."""
    cfg = _cfg(tmp_path, tiny_base, "reward.model={use_lora: true}", "model.lora_r=8", "model.lora_alpha=24",
               "model.lora_target_modules=[q_proj, v_proj]")
    assert not cfg.section("model").use_lora
    trainer, _ = build_trainer(cfg, "helpful", data_dir=toy_data)
    lora = trainer.model.peft_config["default"]
    assert (lora.r, lora.lora_alpha, sorted(lora.target_modules)) == (8, 24, ["q_proj", "v_proj"])
    assert lora.task_type == "SEQ_CLS"  # the score head trains too
    assert next(trainer.model.parameters()).dtype == torch.float32
    trainer, _ = build_trainer(_cfg(tmp_path, tiny_base, "model.use_lora=true", "model.lora_r=4"), "helpful",
                               data_dir=toy_data)
    assert trainer.model.peft_config["default"].r == 4
    trainer, _ = build_trainer(_cfg(tmp_path, tiny_base, "model.use_lora=true", "reward.model={use_lora: false}"),
                               "helpful", data_dir=toy_data)
    assert not hasattr(trainer.model, "peft_config")


def test_zero_optimizer_steps_is_a_config_error(toy_data, tiny_base, tmp_path):
    cfg = _cfg(tmp_path, tiny_base, "reward.num_train_epochs=0.01")  # 300 pairs / 16 a batch: 0.19 steps
    with pytest.raises(ConfigError, match=r"^reward.num_train_epochs: 300 training examples .* no optimizer step"):
        build_trainer(cfg, "helpful", data_dir=toy_data)


def test_checkpoints_are_written_atomically(toy_data, tiny_base, tmp_path):
    sets = ["reward.max_steps=2", "reward.save_steps=1", "reward.eval_steps=1", "reward.logging_steps=1"]
    trainer, _ = build_trainer(_cfg(tmp_path, tiny_base, *sets), "helpful", data_dir=toy_data)
    out = trainer.args.output_dir
    assert out == str(tmp_path / "checkpoints" / "helpful_rm")

    def die(output_dir):  # the process "dies" after the weights and optimizer of checkpoint-1 are written
        raise KeyboardInterrupt("killed while saving")

    trainer._save_rng_state = die
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert os.listdir(out) == [STAGING]  # the partial save is only in staging: no checkpoint-1 to resume from
    assert os.path.isfile(os.path.join(out, STAGING, "checkpoint-1", "model.safetensors"))
    assert resolve_resume("latest", out) is None

    trainer, _ = build_trainer(_cfg(tmp_path, tiny_base, *sets), "helpful", data_dir=toy_data)
    trainer.train()  # a fresh start clears staging; every save lands complete
    assert sorted(os.listdir(out)) == ["checkpoint-1", "checkpoint-2"]
    for name in ("checkpoint-1", "checkpoint-2"):
        assert {TRAINER_STATE, "model.safetensors", "optimizer.pt"} <= set(os.listdir(os.path.join(out, name)))
    best = read_json(os.path.join(out, "checkpoint-2", TRAINER_STATE))["best_model_checkpoint"]
    assert best in (os.path.join(out, "checkpoint-1"), os.path.join(out, "checkpoint-2"))  # not the staging path
    assert resolve_resume("latest", out).endswith("checkpoint-2")


def test_the_score_head_and_lora_start_do_not_depend_on_earlier_random_draws(toy_data, tiny_base, tmp_path):
    """What a stage builds before its Trainer (the score head, LoRA's A matrices) comes from the stage's seed:
    random numbers drawn earlier in the process (another stage, a user's script) change nothing; another
    run.seed changes it."""

    def initial_weights(*sets):
        cfg = _cfg(tmp_path, tiny_base, "reward.model={use_lora: true}", *sets)
        trainer, _ = build_trainer(cfg, "helpful", data_dir=toy_data)
        return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}

    torch.manual_seed(1)
    first = initial_weights()
    torch.rand(1000)  # what an earlier stage in the same process would have consumed
    second = initial_weights()
    assert first.keys() == second.keys() and any("score" in n for n in first)
    assert all(torch.equal(first[n], second[n]) for n in first)
    other = initial_weights("run.seed=7")
    assert any(not torch.equal(first[n], other[n]) for n in first)
