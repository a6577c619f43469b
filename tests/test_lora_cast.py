"""models/lora_cast.py: under autocast the LoRA input cast is skipped with bit-identical outputs; outside
autocast peft's cast still happens (a bf16 model with fp32 adapters must not fail); the hook can be undone."""

import torch

from safealign.models.loading import apply_lora, load_causal_lm
from safealign.models.lora_cast import lora_layers as _lora_layers
from safealign.models.lora_cast import restore_lora_input_cast, skip_lora_input_cast_under_autocast


def _bf16_lora(tiny_base):
    model = apply_lora(load_causal_lm(str(tiny_base), dtype="bfloat16"), r=4, alpha=8, dropout=0.0)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model.eval()


def test_adapters_are_fp32_on_a_bf16_model(tiny_base):
    # the premise: peft keeps the adapters in float32, so its input cast is a real copy
    model = _bf16_lora(tiny_base)
    dtypes = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
    assert dtypes == {torch.float32}


def test_same_logits_under_autocast_and_no_cast(tiny_base):
    model = _bf16_lora(tiny_base)
    ids = torch.randint(3, 100, (2, 12))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(input_ids=ids).logits
    assert skip_lora_input_cast_under_autocast(model) == len(_lora_layers(model)) > 0
    assert skip_lora_input_cast_under_autocast(model) == len(_lora_layers(model))  # idempotent: one hook each
    seen = []
    handles = [m.lora_A["default"].register_forward_pre_hook(lambda mod, a: seen.append(a[0].dtype))
               for m in _lora_layers(model)]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        after = model(input_ids=ids).logits
    assert set(seen) == {torch.bfloat16}  # the adapters saw the bf16 input: no fp32 copy was made
    assert torch.equal(before, after)
    # outside autocast the cast is kept: a bf16 input against fp32 adapter weights would raise
    seen.clear()
    with torch.no_grad():
        plain = model(input_ids=ids).logits
    assert set(seen) == {torch.float32} and torch.isfinite(plain.float()).all()
    for h in handles:
        h.remove()


def test_restore_gives_peft_behaviour_back(tiny_base):
    model = _bf16_lora(tiny_base)
    n = skip_lora_input_cast_under_autocast(model)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=torch.randint(3, 100, (1, 5)))
    assert not any(m.cast_input_dtype_enabled for m in _lora_layers(model))
    assert restore_lora_input_cast(model) == n
    assert all(m.cast_input_dtype_enabled for m in _lora_layers(model))
    assert restore_lora_input_cast(model) == 0
