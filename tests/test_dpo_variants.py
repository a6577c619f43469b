"""LoRA (reference = adapter disabled; merged or adapter export), the on-policy J_C estimator, CLI errors."""

import json

import pytest
import torch
from helpers.dpo import make_cfg, make_run

from safealign.dpo.train import build_trainer, run_train_dpo
from safealign.errors import SafeAlignError

LORA = {"use_lora": True, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}


@pytest.fixture(scope="module")
def judges(tmp_path_factory, tiny_base):
    root = tmp_path_factory.mktemp("judges")
    make_run(root, tiny_base)
    return root


def test_lora_online_reference_is_adapter_disabled_and_matches_precompute(tmp_path, tiny_base, judges):
    make_run(tmp_path, tiny_base, rm_root=judges)
    first = {}
    for precompute in (True, False):
        trainer, _ = build_trainer(make_cfg(tmp_path, tiny_base, judges, model_over=LORA, precompute=precompute,
                                            max_steps=1, save_strategy="no", eval_strategy="no"))
        if not precompute:
            assert trainer.ref_model is None  # no second copy of the model with LoRA
        trainer.train()
        first[precompute] = trainer.state.log_history[0]
    assert first[False]["loss_total"] == pytest.approx(first[True]["loss_total"], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("merge", [True, False])
def test_lora_export(tmp_path, tiny_base, judges, merge):
    make_run(tmp_path, tiny_base, rm_root=judges)
    cfg = make_cfg(tmp_path, tiny_base, judges, model_over=LORA, merge_lora_on_export=merge, max_steps=2,
                   save_steps=1, eval_strategy="no")
    summary = run_train_dpo(cfg)
    out = tmp_path / "models" / "aligned"
    assert (out / "adapter_config.json").is_file() != merge
    assert json.loads((out / "train_summary.json").read_text())["global_step"] == summary["global_step"] == 2
    assert (out / "config.yaml").is_file() and (out / "tokenizer.json").is_file()
    ckpt = tmp_path / "checkpoints" / "dpo" / "checkpoint-2"
    assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / "safealign_state.json").is_file()
    if merge:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(out)
        assert not any("lora" in n for n, _ in model.named_parameters())


def test_on_policy_estimator_updates_lambda_from_samples(tmp_path, tiny_base, judges):
    make_run(tmp_path, tiny_base, rm_root=judges)
    cfg = make_cfg(tmp_path, tiny_base, judges, jc_estimator="on_policy", on_policy_every=2, on_policy_num_prompts=3,
                   on_policy_max_new_tokens=6, max_steps=4, save_strategy="no", eval_strategy="no",
                   constraint="cost", cost_threshold=-100.0, lambda_lr=0.01)
    trainer, _ = build_trainer(cfg)
    assert trainer.cost_scorer is not None  # the cost model stays resident for sampling
    rng = torch.get_rng_state()
    jc = trainer.on_policy_cost()
    assert torch.equal(rng, torch.get_rng_state())  # sampling does not move the training RNG
    assert jc == pytest.approx(trainer.on_policy_cost())  # seeded by step: reproducible
    trainer.train()
    hist = trainer.lagrange.history
    assert [h[0] for h in hist] == [2, 4]  # an estimate every 2 steps; λ waits for one
    assert hist[0][1] == pytest.approx(1.0 + 0.01 * (hist[0][2] + 100.0))


def test_missing_cost_model_is_a_clear_error(tmp_path, tiny_base, judges):
    make_run(tmp_path, tiny_base, rm_root=judges)
    cfg = make_cfg(tmp_path, tiny_base, judges, harmless_rm_path=str(tmp_path / "nope"))
    with pytest.raises(SafeAlignError, match="cost model not found"):
        build_trainer(cfg)


def _cli(*args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    return subprocess.run([sys.executable, "-m", "safealign.cli", "train-dpo", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_errors_are_one_line(tmp_path, tiny_base, judges):
    from helpers.dpo import toy_records, write_cfg, write_jsonl

    make_run(tmp_path, tiny_base, rm_root=judges)
    cfg = write_cfg(tmp_path / "c.yaml", make_cfg(tmp_path, tiny_base, judges))
    proc = _cli("--config", str(cfg), "--resume", str(tmp_path / "checkpoints" / "dpo" / "checkpoint-9"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f"error: --resume {tmp_path / 'checkpoints' / 'dpo' / 'checkpoint-9'}: no such checkpoint folder"), \
        proc.stderr[-2000:]
    rows = toy_records(5)
    del rows[2]["safer_response_id"]
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    proc = _cli("--config", str(cfg))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'data' / 'train.jsonl'}:3: safer_response_id: missing"
    assert not (tmp_path / "models" / "aligned").exists()
