"""Which base model to load and how (dtype, LoRA, quantisation, the embedded tiny model)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..config import asdict_shallow, build_dataclass
from ..errors import ConfigError


@dataclasses.dataclass
class ModelConfig:
    """The policy's base model. `name_or_path: tiny` builds the embedded tiny model (offline default)."""

    name_or_path: str = "tiny"
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False  # never on unless the user turns it on
    attn_implementation: str | None = None
    load_in_4bit: bool = False  # only where bitsandbytes and CUDA exist
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = dataclasses.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # The embedded tiny model (used when name_or_path == "tiny").
    tiny_architecture: Literal["llama", "mistral"] = "llama"
    tiny_hidden_size: int = 64
    tiny_num_layers: int = 2
    tiny_num_heads: int = 4
    tiny_intermediate_size: int = 192
    tiny_vocab_size: int = 2000
    tiny_max_position_embeddings: int = 512

    def __post_init__(self):
        for name in ("lora_r", "lora_alpha", "tiny_hidden_size", "tiny_num_layers", "tiny_num_heads",
                     "tiny_intermediate_size", "tiny_vocab_size", "tiny_max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0 (got {getattr(self, name)})")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout: must be in [0, 1) (got {self.lora_dropout})")
        if self.tiny_hidden_size % self.tiny_num_heads:
            raise ConfigError(f"tiny_hidden_size: must be divisible by tiny_num_heads ({self.tiny_num_heads})")

    @property
    def is_tiny(self) -> bool:
        return self.name_or_path == "tiny"

    def with_overrides(self, overrides: dict | None, key: str) -> "ModelConfig":
        """This config with some fields replaced (a stage's `model` overrides, e.g. `reward.model`,
        `distill.student`): the fields are the `model` section's own, validated the same way; `key` names
        where the overrides came from in error messages."""
        if not overrides:
            return self
        return build_dataclass(ModelConfig, {**asdict_shallow(self), **overrides}, key)
