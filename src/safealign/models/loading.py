"""Load models and tokenizers by Hub id or local path: dtype, LoRA (peft), 4-bit (bitsandbytes + CUDA),
`trust_remote_code` off unless asked, safetensors only."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          BitsAndBytesConfig)

from safetensors import SafetensorError

from ..chat import ensure_chat_template
from ..chat_templates import resolve_chat_template
from ..errors import ConfigError
from .refs import MODEL_MARKERS, TOKENIZER_FILES, check_tokenizer_folder, hub_load_kwargs

log = logging.getLogger(__name__)


def resolve_dtype(name: str):
    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# What a folder or Hub id that holds no loadable model raises: missing/unreadable files (OSError), a bad
# config or tokenizer (ValueError), corrupt weights (SafetensorError). Each is the user's input: exit code 2.
LOAD_ERRORS = (OSError, ValueError, SafetensorError)


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def load_tokenizer(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False,
                   padding_side: str = "right", chat_template: str | None = None):
    """The tokenizer of a model folder or Hub id, with a chat template (`chat_template`: the config's
    `model.chat_template` override, see `chat_templates`; else its own, else safe-rlhf's default) and a pad
    token. A reference that is no model is a ConfigError (one line) before anything loads."""
    template = resolve_chat_template(chat_template) if chat_template else None  # a typo fails first
    # a tokenizer-only folder is fine here (model.tokenizer_name_or_path); a model folder must carry its tokenizer
    kwargs = hub_load_kwargs(str(name_or_path), revision, markers=(*TOKENIZER_FILES, *MODEL_MARKERS))
    check_tokenizer_folder(str(name_or_path))
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code,
                                            **kwargs)
    except LOAD_ERRORS as err:  # a SentencePiece-only folder without `sentencepiece` -> ValueError
        hint = "; tokenizer.model needs `pip install sentencepiece`" if _needs_sentencepiece(name_or_path) else ""
        raise ConfigError(f"{name_or_path}: cannot load the tokenizer ({_first_line(err)}){hint}") from None
    if len(tok) <= 3 and _needs_sentencepiece(name_or_path):  # older transformers fall back to a special-token stub
        raise ConfigError(f"{name_or_path}: tokenizer.model loaded as {len(tok)} tokens; install sentencepiece")
    if template:
        tok.chat_template = template
    ensure_chat_template(tok)
    tok.padding_side = padding_side
    return tok


def _needs_sentencepiece(name_or_path: str) -> bool:
    p = Path(name_or_path)
    return (p / "tokenizer.model").is_file() and not (p / "tokenizer.json").is_file()


def _common_kwargs(name_or_path, revision, dtype, trust_remote_code, load_in_4bit, attn_implementation):
    kwargs = dict(revision=revision, trust_remote_code=trust_remote_code, dtype=resolve_dtype(dtype),
                  use_safetensors=_use_safetensors(name_or_path), **hub_load_kwargs(str(name_or_path), revision))
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if load_in_4bit:
        if not torch.cuda.is_available():
            raise ConfigError("model.load_in_4bit: needs CUDA and bitsandbytes; turn it off on this machine")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"])
    return kwargs


def _use_safetensors(name_or_path: str) -> bool | None:
    # Local folders must hold safetensors; for Hub ids let transformers prefer them (it does by default).
    p = Path(name_or_path)
    if p.is_dir():
        if not any(p.glob("*.safetensors")) and any(p.glob("*.bin")):
            raise ConfigError(f"{name_or_path}: only pickle (.bin) weights found; convert them to safetensors")
        return True if any(p.glob("*.safetensors")) else None
    return None


def load_causal_lm(name_or_path: str, revision: str | None = None, dtype: str = "auto",
                   trust_remote_code: bool = False, load_in_4bit: bool = False,
                   attn_implementation: str | None = None):
    kwargs = _common_kwargs(name_or_path, revision, dtype, trust_remote_code, load_in_4bit, attn_implementation)
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except LOAD_ERRORS as err:
        raise ConfigError(f"{name_or_path}: cannot load the model ({_first_line(err)})") from None


def load_score_model(name_or_path: str, revision: str | None = None, dtype: str = "auto",
                     trust_remote_code: bool = False, load_in_4bit: bool = False,
                     attn_implementation: str | None = None, pad_token_id: int | None = None):
    """A causal LM with a scalar head read at the last non-padding token (num_labels=1)."""
    kwargs = _common_kwargs(name_or_path, revision, dtype, trust_remote_code, load_in_4bit, attn_implementation)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=1, **kwargs)
    except LOAD_ERRORS as err:
        raise ConfigError(f"{name_or_path}: cannot load the model ({_first_line(err)})") from None
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def apply_lora(model, r: int = 16, alpha: int = 32, dropout: float = 0.05, target_modules=None,
               task_type: str = "CAUSAL_LM", modules_to_save=None):
    """Wrap `model` with a LoRA adapter (peft). For score models pass task_type='SEQ_CLS' so the head trains."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in (target_modules or ["q_proj", "v_proj"]) if m in present]
    if not targets:
        raise ConfigError(f"lora_target_modules: none of {target_modules} exist in {type(model).__name__}")
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type=task_type,
                     modules_to_save=modules_to_save)
    with warnings.catch_warnings():
        # peft 0.21 reads the model's `is_gradient_checkpointing`, which transformers 5.2x deprecates (same value
        # as `is_activation_checkpointing`): a warning on every LoRA model that nobody here can act on.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
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
