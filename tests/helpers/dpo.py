"""Helpers for the Safe-MM-DPO tests: toy records, random-head judges, run folders, configs."""

from __future__ import annotations

import json
from pathlib import Path

from safealign.toy import generate_toy_world


def toy_records(n: int, seed: int = 0) -> list[dict]:
    """Canonical preference records from the toy world (the fields the DPO stage reads)."""
    out = []
    for i, row in enumerate(generate_toy_world(num_pairs=n, seed=seed)):
        safe0, safe1 = row["is_response_0_safe"], row["is_response_1_safe"]
        out.append({"id": f"{seed}-{i}", "prompt": row["prompt"], "response_0": row["response_0"],
                    "response_1": row["response_1"], "better_response_id": row["better_response_id"],
                    "safer_response_id": row["safer_response_id"], "is_response_0_safe": safe0,
                    "is_response_1_safe": safe1, "severity": None,
                    "harm_categories": sorted({c for i in (0, 1) for c, on in row[f"response_{i}_harm_category"].items()
                                               if on}),
                    "is_harmful_prompt": not (safe0 and safe1), "source": "toy"})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def random_head_rm(base: Path, out: Path, seed: int) -> Path:
    """A real score model: the tiny base with a randomly initialised scalar head, saved like a trained RM."""
    import torch

    from safealign.models.loading import load_score_model, load_tokenizer

    if (out / "config.json").is_file():
        return out
    tok = load_tokenizer(str(base))
    torch.manual_seed(seed)
    model = load_score_model(str(base), dtype="float32", pad_token_id=tok.pad_token_id)
    with torch.no_grad():  # a visible spread of scores
        model.score.weight.normal_(0, 2.0)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def make_run(root: Path, tiny_base: Path, n_train: int = 24, n_val: int = 8, seed: int = 0,
             rm_root: Path | None = None) -> Path:
    """A run directory with data/{train,val}.jsonl and models/{helpful_rm,harmless_rm} (or links to the
    judges already built under `rm_root`, which make_cfg then points to)."""
    recs = toy_records(n_train + n_val, seed)
    write_jsonl(root / "data" / "train.jsonl", recs[:n_train])
    write_jsonl(root / "data" / "val.jsonl", recs[n_train:])
    rm_root = rm_root or root
    random_head_rm(tiny_base, rm_root / "models" / "helpful_rm", 1)
    random_head_rm(tiny_base, rm_root / "models" / "harmless_rm", 2)
    return root


def dpo_settings(**over) -> dict:
    """Small, fast, deterministic settings for CPU tests."""
    s = {"learning_rate": 1e-3, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
         "gradient_accumulation_steps": 1, "num_train_epochs": 1, "max_steps": -1, "warmup_steps": 0,
         "save_steps": 3, "eval_steps": 1000, "logging_steps": 1, "max_length": 96, "max_prompt_length": 48,
         "use_cpu": True, "dataloader_num_workers": 0, "lambda_lr": 0.5, "disable_tqdm": True}
    s.update(over)
    return s


def make_cfg(run_dir: Path, tiny_base: Path, rm_root: Path | None = None, model_over: dict | None = None,
             **dpo_over):
    """The run's config: the policy starts from `tiny_base` (`model.name_or_path`), the judges are those under
    `rm_root` (`reward.*_rm_path`, which `helpful_rm_path=`/`harmless_rm_path=` replace); other keywords are
    `dpo` settings."""
    from safealign.config import Config

    rm_root = rm_root or run_dir
    reward = {f"{dim}_rm_path": dpo_over.pop(f"{dim}_rm_path", str(rm_root / "models" / f"{dim}_rm"))
              for dim in ("helpful", "harmless")}
    raw = {"run": {"name": "t", "run_dir": str(run_dir), "report_to": ["none"], "seed": 7},
           "model": {"name_or_path": str(tiny_base), "dtype": "float32", **(model_over or {})},
           "reward": reward, "dpo": dpo_settings(**dpo_over)}
    return Config(raw)


def write_cfg(path: Path, cfg) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg.raw), encoding="utf-8")
    return path


def trainer_factory(run_dir: Path, tiny_base: Path, judges: Path):
    """`make(**dpo_settings) -> (trainer, ctx)`: a fresh run in `run_dir` with the judges under `judges`."""
    from safealign.dpo.train import build_trainer

    def make(**over):
        make_run(run_dir, tiny_base, rm_root=judges)
        return build_trainer(make_cfg(run_dir, tiny_base, judges, **over))

    return make


def first_batch(trainer, n: int = 4) -> dict:
    """The trainer's collated, device-placed batch of its first `n` training features."""
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(n)]))


def encoded_pairs_batch(tiny_base, pairs):
    """(input_ids, attention_mask, response_mask) of (prompt, response) pairs encoded as every stage encodes
    them (`encode_pair`) and right-padded by `pad_sequences`: a real batch for the log-prob tests."""
    from safealign.chat import encode_pair
    from safealign.dpo.data import pad_sequences
    from safealign.models.loading import load_tokenizer

    tok = load_tokenizer(str(tiny_base))
    enc = [encode_pair(tok, p, r, 256, 128) for p, r in pairs]
    return pad_sequences([e["input_ids"] for e in enc], [e["prompt_len"] for e in enc], tok.pad_token_id)


def lora_policy(tiny_base):
    """The tiny base under a LoRA adapter whose B matrices are non-zero (a fresh adapter is the identity, so
    a LoRA test on it would not see the adapter), in eval mode."""
    import torch

    from safealign.models.loading import apply_lora, load_causal_lm

    model = apply_lora(load_causal_lm(str(tiny_base), dtype="float32"), r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model.eval()
