"""`sequence_logps` (response-only logits via `logits_to_keep`) equals the plain full-logits computation on a real
tiny Llama and tokenizer: right padding, different prompt lengths, a LoRA wrapper, a DDP wrapper, a model that
ignores `logits_to_keep`, a batch without response tokens; and gradients reach the policy."""

from pathlib import Path

import torch

from safealign.chat import encode_pair
from safealign.dpo.data import pad_sequences, sequence_logps
from safealign.models.loading import apply_lora, load_causal_lm, load_tokenizer

PAIRS = [("How do I bake bread?", "First mix flour and water, then bake it in the oven."),
         ("Hi", "Sure."),
         ("Tell me, step by step and in detail, how yeast makes bread rise in a warm oven?", "It eats sugar.")]


def _batch(tiny_base):
    tok = load_tokenizer(str(tiny_base))
    enc = [encode_pair(tok, p, r, 256, 128) for p, r in PAIRS]
    plens = [e["prompt_len"] for e in enc]
    assert len(set(plens)) == len(plens)  # different prompt lengths
    assert len({len(e["input_ids"]) for e in enc}) == len(enc)  # different total lengths: right padding is used
    return pad_sequences([e["input_ids"] for e in enc], plens, tok.pad_token_id)


def _full_logits_reference(model, ids, attn, resp):
    """The straightforward version: every position through the LM head, mask after the log-softmax."""
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = resp[:, 1:].float()
    return (logp * mask).sum(-1), mask.sum(-1)


def _check(model, ids, attn, resp):
    with torch.no_grad():
        want = _full_logits_reference(model, ids, attn, resp)
        got = sequence_logps(model, ids, attn, resp)
    assert got[0].shape == want[0].shape == (ids.shape[0],)
    torch.testing.assert_close(got[0], want[0], atol=1e-4, rtol=1e-5)
    assert torch.equal(got[1], want[1]) and got[1].tolist() == resp[:, 1:].sum(-1).float().tolist()


def test_matches_full_logits_and_gradients_flow(tiny_base):
    ids, attn, resp = _batch(tiny_base)
    model = load_causal_lm(str(tiny_base), dtype="float32").eval()
    _check(model, ids, attn, resp)
    for row in range(ids.shape[0]):  # each row alone (no padding; its own first response position)
        _check(model, ids[row:row + 1], attn[row:row + 1], resp[row:row + 1])
    logps, _ = sequence_logps(model, ids, attn, resp)
    logps.sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_lora_wrapped_model_and_disabled_adapter(tiny_base):
    ids, attn, resp = _batch(tiny_base)
    model = apply_lora(load_causal_lm(str(tiny_base), dtype="float32"), r=4, alpha=8, dropout=0.0)
    with torch.no_grad():  # a non-zero adapter, so "adapter on" and "adapter off" differ
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.eval()
    _check(model, ids, attn, resp)
    with model.disable_adapter():  # the LoRA reference path of the trainer's online mode
        _check(model, ids, attn, resp)
    logps, _ = sequence_logps(model, ids, attn, resp)
    logps.sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def _ddp_check(tiny_base: str, store: str) -> None:
    """Runs in a child process (see test_ddp_wrapped_model): the DDP-wrapped policy gives the same log-probs."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    ids, attn, resp = _batch(tiny_base)
    model = load_causal_lm(str(tiny_base), dtype="float32").eval()
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model)
        with torch.no_grad():
            want = _full_logits_reference(model, ids, attn, resp)
            got = sequence_logps(ddp, ids, attn, resp)
        torch.testing.assert_close(got[0], want[0], atol=1e-4, rtol=1e-5)
        sequence_logps(ddp, ids, attn, resp)[0].sum().backward()
        assert model.lm_head.weight.grad is not None
    finally:
        dist.destroy_process_group()


def test_ddp_wrapped_model(tiny_base, tmp_path):
    # In a child process with a deadline: gloo's in-process set-up hung (in native code, no timeout applies)
    # in 2 of about 10 full-suite runs on this 2-core machine; a hung child is retried once instead of stalling CI.
    import subprocess
    import sys

    code = (f"import sys; sys.path[:0] = {sys.path[:3]!r}; import test_dpo_logps as t; "
            f"t._ddp_check({str(tiny_base)!r}, {str(tmp_path / 'pg')!r})")
    for attempt in (1, 2):
        (tmp_path / "pg").unlink(missing_ok=True)
        try:
            out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True,
                                 text=True, timeout=180)
        except subprocess.TimeoutExpired:
            assert attempt == 1, "the DDP check hung twice"
            continue
        assert out.returncode == 0, out.stderr[-3000:]
        return


def test_model_ignoring_logits_to_keep(tiny_base):
    ids, attn, resp = _batch(tiny_base)
    inner = load_causal_lm(str(tiny_base), dtype="float32").eval()

    class AllPositions(torch.nn.Module):  # a causal LM whose forward swallows logits_to_keep
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, attention_mask=None, **kwargs):
            kwargs.pop("logits_to_keep", None)
            return self.lm(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    _check(AllPositions(inner), ids, attn, resp)


def test_batch_without_response_tokens(tiny_base):
    ids, attn, resp = _batch(tiny_base)
    model = load_causal_lm(str(tiny_base), dtype="float32").eval()
    none = torch.zeros_like(resp)
    logps, ntok = sequence_logps(model, ids, attn, none)
    assert logps.tolist() == [0.0] * ids.shape[0] and ntok.tolist() == [0.0] * ids.shape[0]
    # one row with a response, the others without: the kept window follows that row only
    some = none.clone()
    some[1] = resp[1]
    _check(model, ids, attn, some)
