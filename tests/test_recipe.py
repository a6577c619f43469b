"""The real recipe's config, checked with no download: it loads and validates, and a Mistral-architecture model
(random weights, 2 layers, small hidden size) goes through the same loading code path (load_policy + LoRA,
activation checkpointing) and trains one step."""

import json
from pathlib import Path

import pytest
import yaml

from safealign.config import load_config

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "mistral7b_pku_saferlhf.yaml"

# Mistral-7B-v0.1's config.json (architecture), so the test builds the same model class and shape rules.
MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768, rope_theta=10000.0,
                  sliding_window=4096, rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=False,
                  bos_token_id=1, eos_token_id=2)
SMALL = dict(hidden_size=64, intermediate_size=224, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
             vocab_size=512)  # the 7B's 4:1 query:key-value head ratio kept


@pytest.fixture(scope="module")
def recipe():
    return load_config(RECIPE)


def test_recipe_loads_and_validates_with_seed_hyperparameters(recipe):
    recipe.validate(list(recipe.raw))  # every section present, built and checked
    assert recipe.section("model").name_or_path == "mistralai/Mistral-7B-v0.1"
    assert recipe.section("model").use_lora and recipe.section("model").dtype == "bfloat16"
    # the judges load through the model section: LoRA with its settings, not a second LoRA block
    rm_model = recipe.section("reward").model_config(recipe.section("model"))
    assert rm_model.use_lora and (rm_model.lora_r, rm_model.lora_alpha) == (16, 32)
    assert rm_model.name_or_path == "mistralai/Mistral-7B-v0.1"
    assert recipe.section("data").dataset == "PKU-Alignment/PKU-SafeRLHF"
    d = recipe.section("dpo")
    seed = dict(algorithm="safe_mm_dpo", lambda_init=1.0, w=0.5, k=0.5, beta_ori=0.1, learning_rate=5e-7,
                per_device_train_batch_size=16, gradient_accumulation_steps=4, kl_coeff=0.1, lambda_lr=0.01,
                num_train_epochs=2, max_grad_norm=1.0, warmup_steps=100, save_steps=500, eval_steps=250)
    for key, value in seed.items():
        assert getattr(d, key) == value, key
    for sec in (d, recipe.section("reward"), recipe.section("sft")):  # the key transformers 4.x and 5.x both take
        assert sec.gradient_checkpointing and getattr(sec, "activation_checkpointing", True)
    assert d.precompute
    import torch

    assert d.bf16 == bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())  # on where it can be
    sweep = recipe.section("sweep")
    assert sweep.lambda_init == [0.5, 1.0, 2.0] and sweep.w == [0.3, 0.5, 1.0] and sweep.val_prompts == 100


def test_recipe_pipeline_plan(recipe, tmp_path):
    from safealign.pipeline.plan import build_plan

    cfg = recipe.with_overrides([("run.run_dir", str(tmp_path))])
    plan = {s.name: s for s in build_plan(cfg)}
    assert not plan["base"].enabled  # a Hub model: nothing to build
    assert not plan["sft"].enabled and not plan["distill"].enabled
    assert [n for n in plan if n.startswith("dpo")] == ["dpo"]
    assert plan["evaluate_base"].extra["model"] == "mistralai/Mistral-7B-v0.1"


def test_mistral_architecture_through_the_loading_path(recipe, tmp_path):
    import dataclasses

    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from safealign.models.loading import count_parameters, load_policy

    config = MistralConfig(**{**MISTRAL_7B, **SMALL})
    torch.manual_seed(0)
    MistralForCausalLM(config).save_pretrained(tmp_path / "mistral", safe_serialization=True)
    mcfg = dataclasses.replace(recipe.section("model"), dtype="float32")  # bf16 matmuls are slow on CPU
    model = load_policy(mcfg, str(tmp_path / "mistral"))
    assert type(model.get_base_model()).__name__ == "MistralForCausalLM"
    assert model.peft_config["default"].r == 16
    targets = set(model.peft_config["default"].target_modules)
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    total, trainable = count_parameters(model)
    assert 0 < trainable < total
    # activation checkpointing as the Trainer switches it on, then one training step reaches only LoRA weights
    model.activation_checkpointing_enable() if hasattr(model, "activation_checkpointing_enable") \
        else model.gradient_checkpointing_enable()
    model.train()
    ids = torch.randint(3, 512, (2, 24))
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert all("lora_" in n for n in grads)


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import ClusterConfig

    kinds = {"ddp": "MULTI_GPU", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED", "fsdp": "FSDP"}
    for name, kind in kinds.items():
        path = REPO / "configs" / "accelerate" / f"{name}.yaml"
        cc = ClusterConfig.from_yaml_file(str(path))
        assert str(cc.distributed_type).endswith(kind), name
        ds_file = (cc.deepspeed_config or {}).get("deepspeed_config_file")
        if ds_file:
            ds = json.loads((REPO / ds_file).read_text())
            assert ds["zero_optimization"]["stage"] == int(name[-1])
            assert ds["train_micro_batch_size_per_gpu"] == "auto"  # taken from the safealign config
    fsdp = yaml.safe_load((REPO / "configs" / "accelerate" / "fsdp.yaml").read_text())
    assert fsdp["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "MistralDecoderLayer"
