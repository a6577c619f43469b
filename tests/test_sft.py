"""Response-only SFT: masking, the loss against a hand computation, training lowers the validation loss,
atomic checkpoints resume, the warm-up reads the run's data through the one record reader, config validation."""

import json

import pytest
import torch

from safealign.chat import prompt_text
from safealign.sft import (IGNORE_INDEX, EncodedDataset, ResponseOnlyCollator, SFTStageConfig, chosen_examples,
                           response_loss, run_sft)

WORDS = "flour water yeast bread bake oven salt sugar butter milk eggs pan".split()


def _examples(n, offset=0):
    out = []
    for i in range(offset, offset + n):
        a, b, c = WORDS[i % 12], WORDS[(i * 7) % 12], WORDS[(i * 5) % 12]
        out.append({"prompt": f"How do I use {a} with {b}?", "response": f"Sure, first add the {a}, then the {c}."})
    return out


@pytest.fixture(scope="module")
def tok(tiny_base):
    from safealign.models.loading import load_tokenizer

    return load_tokenizer(str(tiny_base))


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "ckpt"), learning_rate=3e-3, num_train_epochs=2,
                per_device_train_batch_size=16, logging_steps=5, save_strategy="epoch", seed=0)
    base.update(kw)
    return SFTStageConfig(**base)


def test_labels_are_ignored_exactly_on_prompt_and_padding(tok):
    exs = _examples(5) + [{"prompt": "Hi?", "response": "Hello there, a much longer answer about bread and salt."}]
    ds = EncodedDataset(exs, tok, max_length=64)
    batch = ResponseOnlyCollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    for row, (ex, item) in enumerate(zip(exs, ds.items)):
        # the prompt part is the chat-formatted prompt, token for token
        p_ids = tok(prompt_text(tok, ex["prompt"]), add_special_tokens=False)["input_ids"]
        assert item["prompt_len"] == len(p_ids) and item["input_ids"][: len(p_ids)] == p_ids
        n, p = len(item["input_ids"]), item["prompt_len"]
        labels = batch["labels"][row]
        assert (labels[:p] == IGNORE_INDEX).all()
        assert labels[p:n].tolist() == item["input_ids"][p:]
        assert labels[p:n].tolist()[-1] == tok.eos_token_id
        assert (labels[n:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)


def test_loss_is_the_response_token_cross_entropy(tiny_base, tok, tmp_path):
    from transformers import AutoModelForCausalLM, Trainer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
    ds = EncodedDataset(_examples(4), tok, max_length=64)
    batch = ResponseOnlyCollator(tok.pad_token_id)(ds.items)
    with torch.no_grad():
        out = model(**batch)
        logits = out.logits
    # by hand: -log p(next token) at every response position, averaged over response tokens only
    logp = torch.log_softmax(logits.float(), dim=-1)
    total, count = 0.0, 0
    for row, item in enumerate(ds.items):
        ids, p = item["input_ids"], item["prompt_len"]
        for t in range(p, len(ids)):
            total -= logp[row, t - 1, ids[t]].item()
            count += 1
    hand = total / count
    assert count == sum(len(x["input_ids"]) - x["prompt_len"] for x in ds.items)
    assert out.loss.item() == pytest.approx(hand, rel=1e-5)
    assert response_loss(logits, batch["labels"]).item() == pytest.approx(hand, rel=1e-5)
    # the prompt tokens carry no loss: changing them changes nothing but the conditioning
    trainer = Trainer(model=model, args=_args(tmp_path, use_cpu=True, eval_strategy="no"))
    with torch.no_grad():
        assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(hand, rel=1e-5)


def test_sft_lowers_validation_loss_and_saves_a_plain_model(tiny_base, tmp_path):
    from transformers import AutoModelForCausalLM

    from safealign.training import STAGING, TRAINER_STATE

    out_dir = tmp_path / "sft"
    metrics = run_sft(_examples(160), _examples(32, offset=500), str(tiny_base), out_dir,
                      _args(tmp_path, max_length=64))
    print("initial val loss", metrics["initial_val_loss"], "final", metrics["val_loss"])
    assert metrics["val_loss"] < metrics["initial_val_loss"] - 1.0
    assert metrics["val_perplexity"] < metrics["initial_val_perplexity"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "config.yaml", "metrics.json"):
        assert (out_dir / name).is_file(), name
    assert json.loads((out_dir / "metrics.json").read_text())["val_loss"] == metrics["val_loss"]
    assert not list(out_dir.parent.glob(".sft.tmp-*"))
    AutoModelForCausalLM.from_pretrained(str(out_dir))  # loads back as a plain model

    # checkpoints are written through the shared atomic owner: complete, and no staging folder left behind
    ckpts = sorted((tmp_path / "ckpt").glob("checkpoint-*"))
    assert ckpts and all((c / TRAINER_STATE).is_file() for c in ckpts)
    assert not (tmp_path / "ckpt" / STAGING).exists()
    # resume: a longer schedule continues from the last checkpoint instead of starting over
    more = run_sft(_examples(160), _examples(32, offset=500), str(tiny_base), tmp_path / "sft2",
                   _args(tmp_path, num_train_epochs=3, max_length=64), resume="latest")
    assert more["global_step"] == 3 * metrics["global_step"] // 2
    assert "initial_val_loss" not in more  # resumed runs do not re-measure the start


def test_a_schedule_without_an_optimizer_step_is_a_config_error(tiny_base, tmp_path):
    from safealign.errors import ConfigError

    with pytest.raises(ConfigError, match="sft.num_train_epochs: 20 training examples"):
        run_sft(_examples(20), None, str(tiny_base), tmp_path / "sft", _args(tmp_path, num_train_epochs=0.01),
                steps_key="sft.num_train_epochs")
    assert not (tmp_path / "sft").exists() and not (tmp_path / "ckpt").exists()


def test_bad_examples_name_the_row(tok, tmp_path):
    from safealign.config import load_config
    from safealign.errors import DataError
    from safealign.fileio import write_jsonl
    from safealign.sft import run_sft_warmup

    with pytest.raises(DataError, match="train examples:2: response"):
        EncodedDataset([{"prompt": "a", "response": "b"}, {"prompt": "a"}], tok, source="train examples")
    good = {"prompt": "p", "response_0": "a", "response_1": "b", "better_response_id": 1, "safer_response_id": 0}
    assert chosen_examples([good]) == [{"prompt": "p", "response": "b"}]
    # the warm-up reads the run's train split (here `data.output_dir`) through the one record reader
    data = tmp_path / "prepared"
    write_jsonl(data / "train.jsonl", [good, {**good, "better_response_id": 2}])
    cfg = load_config(None, [f"run.run_dir={tmp_path / 'run'}", f"data.output_dir={data}", "sft.enabled=true"])
    with pytest.raises(DataError, match=r"train.jsonl:2: better_response_id"):
        run_sft_warmup(cfg)


def test_config_section_validates():
    from safealign.config import load_config
    from safealign.errors import ConfigError

    cfg = load_config(None, ["sft.enabled=true", "sft.max_length=128"])
    assert cfg.section("sft").enabled and cfg.section("sft").max_length == 128
    assert cfg.section("sft").learning_rate == 2e-5
    with pytest.raises(ConfigError, match="sft.max_length"):
        load_config(None, ["sft.max_length=2"])
    with pytest.raises(ConfigError, match="sft.learning_rate"):
        load_config(None, ["sft.learning_rate=-1"])
    with pytest.raises(ConfigError, match="sft.max_train_examples"):
        load_config(None, ["sft.max_train_examples=0"])


def test_warmup_trains_the_base_on_the_more_helpful_answers(tmp_path):
    from safealign.config import load_config
    from safealign.data.prepare import run_prepare
    from safealign.fileio import read_jsonl
    from safealign.sft import run_sft_warmup

    rd = tmp_path / "run"
    cfg = load_config(None, [f"run.run_dir={rd}", "run.report_to=[tensorboard]", "toy.num_pairs=200",
                             "sft.enabled=true", "sft.learning_rate=3e-3", "sft.num_train_epochs=2",
                             "sft.max_length=128", "sft.disable_tqdm=true"])
    run_prepare(cfg.section("data"), cfg.section("toy"), rd / "data")
    metrics = run_sft_warmup(cfg)
    out = rd / "models" / "sft"
    assert (out / "model.safetensors").is_file() and (out / "config.yaml").is_file()
    assert (rd / "models" / "base" / "config.json").is_file()  # the tiny base was built first
    assert list((rd / "checkpoints" / "sft").glob("checkpoint-*"))
    assert list((rd / "logs" / "sft").glob("events.out.tfevents.*"))
    assert metrics["train_examples"] == len(read_jsonl(rd / "data" / "train.jsonl"))
    assert metrics["val_loss"] < metrics["initial_val_loss"]
    # the warm-up set is the helpful choice: on harmful prompts of the toy world mostly the unsafe answer
    rows = [r for r in read_jsonl(rd / "data" / "train.jsonl") if r["is_harmful_prompt"]]
    unsafe = sum(not r[f"is_response_{r['better_response_id']}_safe"] for r in rows) / len(rows)
    print(f"unsafe share of the warm-up answers to harmful prompts: {unsafe:.2f}")
    assert unsafe > 0.5


def test_bf16_is_dropped_without_cuda():
    from safealign.config import load_config

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = load_config(None, ["sft.bf16=true", "distill.bf16=true"])
    assert cfg.section("sft").bf16 is False and cfg.section("distill").bf16 is False
    assert load_config(None, []).section("sft").bf16 is False
