"""Load models and tokenizers by Hub id or local path: dtype, LoRA (peft), 4-bit (bitsandbytes + CUDA),
`trust_remote_code` off unless asked, safetensors only."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          BitsAndBytesConfig)

from ..chat import ensure_chat_template
from ..errors import SafeAlignError

log = logging.getLogger(__name__)


def resolve_dtype(name: str):
    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False,
                   padding_side: str = "right"):
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise SafeAlignError(f"{name_or_path}: cannot load tokenizer ({str(err).splitlines()[0]})") from None
    ensure_chat_template(tok)
    tok.padding_side = padding_side
    return tok


def _common_kwargs(name_or_path, revision, dtype, trust_remote_code, load_in_4bit, attn_implementation):
    kwargs = dict(revision=revision, trust_remote_code=trust_remote_code, dtype=resolve_dtype(dtype),
                  use_safetensors=_use_safetensors(name_or_path))
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if load_in_4bit:
        if not torch.cuda.is_available():
            raise SafeAlignError("model.load_in_4bit: needs CUDA and bitsandbytes; turn it off on this machine")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"])
    return kwargs


def _use_safetensors(name_or_path: str) -> bool | None:
    # Local folders must hold safetensors; for Hub ids let transformers prefer them (it does by default).
    p = Path(name_or_path)
    if p.is_dir():
        if not any(p.glob("*.safetensors")) and any(p.glob("*.bin")):
            raise SafeAlignError(f"{name_or_path}: only pickle (.bin) weights found; convert them to safetensors")
        return True if any(p.glob("*.safetensors")) else None
    return None


def load_causal_lm(name_or_path: str, revision: str | None = None, dtype: str = "auto",
                   trust_remote_code: bool = False, load_in_4bit: bool = False,
                   attn_implementation: str | None = None):
    kwargs = _common_kwargs(name_or_path, revision, dtype, trust_remote_code, load_in_4bit, attn_implementation)
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except OSError as err:
        raise SafeAlignError(f"{name_or_path}: cannot load model ({str(err).splitlines()[0]})") from None


def load_score_model(name_or_path: str, revision: str | None = None, dtype: str = "auto",
                     trust_remote_code: bool = False, load_in_4bit: bool = False,
                     attn_implementation: str | None = None, pad_token_id: int | None = None):
    """A causal LM with a scalar head read at the last non-padding token (num_labels=1)."""
    kwargs = _common_kwargs(name_or_path, revision, dtype, trust_remote_code, load_in_4bit, attn_implementation)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=1, **kwargs)
    except OSError as err:
        raise SafeAlignError(f"{name_or_path}: cannot load model ({str(err).splitlines()[0]})") from None
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def apply_lora(model, r: int = 16, alpha: int = 32, dropout: float = 0.05, target_modules=None,
               task_type: str = "CAUSAL_LM", modules_to_save=None):
    """Wrap `model` with a LoRA adapter (peft). For score models pass task_type='SEQ_CLS' so the head trains."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in (target_modules or ["q_proj", "v_proj"]) if m in present]
    if not targets:
        raise SafeAlignError(f"lora_target_modules: none of {target_modules} exist in {type(model).__name__}")
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type=task_type,
                     modules_to_save=modules_to_save)
    return get_peft_model(model, cfg)


def load_policy(model_cfg, name_or_path: str | None = None):
    """Load the policy described by a ModelConfig (optionally from another path), LoRA applied if asked."""
    model = load_causal_lm(name_or_path or model_cfg.name_or_path, revision=model_cfg.revision,
                           dtype=model_cfg.dtype, trust_remote_code=model_cfg.trust_remote_code,
                           load_in_4bit=model_cfg.load_in_4bit, attn_implementation=model_cfg.attn_implementation)
    return apply_configured_lora(model, model_cfg)


def load_trainable_score_model(model_cfg, name_or_path: str, pad_token_id: int | None = None):
    """A score model to train (the reward models), described by a ModelConfig, LoRA applied if asked.

    Full fine-tuning keeps float32 master weights under `dtype: auto` (bf16 runs as autocast when the Trainer
    has `bf16` on): AdamW updates in bf16 weights lose most small steps. LoRA and 4-bit train float32 adapters
    over a base in the configured dtype. With LoRA the score head trains too (peft `SEQ_CLS`).
    """
    full = not (model_cfg.use_lora or model_cfg.load_in_4bit)
    dtype = "float32" if model_cfg.dtype == "auto" and full else model_cfg.dtype
    model = load_score_model(name_or_path, revision=model_cfg.revision, dtype=dtype,
                             trust_remote_code=model_cfg.trust_remote_code, load_in_4bit=model_cfg.load_in_4bit,
                             attn_implementation=model_cfg.attn_implementation, pad_token_id=pad_token_id)
    return apply_configured_lora(model, model_cfg, task_type="SEQ_CLS")


def apply_configured_lora(model, model_cfg, task_type: str = "CAUSAL_LM"):
    """`model` wrapped with the ModelConfig's LoRA adapter when `use_lora`, else `model` itself."""
    if not model_cfg.use_lora:
        return model
    return apply_lora(model, model_cfg.lora_r, model_cfg.lora_alpha, model_cfg.lora_dropout,
                      model_cfg.lora_target_modules, task_type=task_type)


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
