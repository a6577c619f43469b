"""Skip peft's LoRA input cast where autocast makes it a no-op that still costs two copies of every activation.

Why: peft keeps LoRA adapters in float32 on a bf16 model (`autocast_adapter_dtype=True`, for optimizer
precision) and casts each LoRA layer's input to the adapter's dtype: a (tokens × width) bf16 → fp32 copy per
adapted linear layer, which autocast then copies back to bf16 for the matmul. On one H200 with Mistral-7B,
LoRA on all linear layers, those copies were the largest non-matmul kernels of a Safe-MM-DPO step
(docs/benchmarks.md, "Results: GPU through the trainers"). Under autocast the matmul runs in bf16 whatever the input dtype, so skipping
the cast gives bit-identical outputs; outside autocast the cast is still needed (a bf16 input against fp32
weights would fail), so a forward pre-hook decides per call from `torch.is_autocast_enabled`.
"""

from __future__ import annotations

import torch

HOOK_ATTR = "_safealign_lora_cast_hook"


def _decide_cast(module, args) -> None:
    x = args[0] if args else None
    if isinstance(x, torch.Tensor):
        module.cast_input_dtype_enabled = not torch.is_autocast_enabled(x.device.type)


def lora_layers(model) -> list:
    """The peft LoRA layers of `model` (the modules whose input peft casts)."""
    return [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "_cast_input_dtype")]


def skip_lora_input_cast_under_autocast(model) -> int:
    """Register the per-call decision on every LoRA layer of `model` (idempotent); returns how many layers."""
    layers = lora_layers(model)
    for module in layers:
        if getattr(module, HOOK_ATTR, None) is None:
            setattr(module, HOOK_ATTR, module.register_forward_pre_hook(_decide_cast))
    return len(layers)


def restore_lora_input_cast(model) -> int:
    """Undo `skip_lora_input_cast_under_autocast` (peft's own behaviour again); returns how many layers."""
    n = 0
    for module in model.modules():
        handle = getattr(module, HOOK_ATTR, None)
        if handle is not None:
            handle.remove()
            setattr(module, HOOK_ATTR, None)
            module.cast_input_dtype_enabled = True
            n += 1
    return n
