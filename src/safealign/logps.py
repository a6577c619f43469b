"""Per-token log-probabilities of target tokens without a (N, T, V) float32 log-softmax.

Why this module exists: `log_softmax(logits.float()).gather(targets)` keeps a float32 copy of the whole
vocabulary tensor for backward (and a second one for its gradient), which on CPU was the largest live tensor of
a DPO step (docs/benchmarks.md). Only one number per position is needed:

    logp[n, t] = x[n, t, y[n, t]] - logsumexp_v x[n, t, v]           x = logits, y = targets

`token_logps` computes it block by block (a block = one row's positions chunk, sized so its float32 copy stays
under `block_bytes`), upcasting only the block to float32 (so a bf16 model accumulates in float32, as the plain
version does), and keeps for backward only the logits in the model's dtype plus the float32 logsumexp (N, T).
Backward recomputes the softmax block by block:

    d logp[n, t] / d x[n, t, v] = 1[v = y[n, t]] - softmax(x[n, t])_v

Idea as in TRL's `selective_log_softmax` (a loop over rows of `logsumexp`), with a custom autograd function so
backward does not materialise the full float32 softmax either. The numbers equal the plain float32
log-softmax + gather up to float32 rounding (tests/test_logps_chunked.py).

An optional fused path (`liger-kernel`) is not used: its fused linear cross-entropy with reduction="none" has
a reported backward bug for per-token values, and it cannot be checked on this CPU-only machine; the block
recomputation above is exact and runs everywhere.
"""

from __future__ import annotations

import torch

DEFAULT_BLOCK_BYTES = 32 * 2**20  # float32 bytes of one block's (positions, V) copy


def _block_len(vocab: int, block_bytes: int) -> int:
    return max(1, int(block_bytes) // (4 * max(1, vocab)))


class _TokenLogps(torch.autograd.Function):
    """logits (N, T, V) any float dtype, targets (N, T) long -> logp (N, T) float32 (see module docstring)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, block: int) -> torch.Tensor:
        n_rows, length, _ = logits.shape
        out = torch.empty((n_rows, length), dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        for n in range(n_rows):
            for s in range(0, length, block):
                x = logits[n, s:s + block]  # (b, V), model dtype
                lse[n, s:s + block] = _logsumexp_fp32(x)
                out[n, s:s + block] = x.gather(-1, targets[n, s:s + block, None]).squeeze(-1).float()
        out.sub_(lse)
        ctx.save_for_backward(logits, targets, lse)
        ctx.block = block
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        block = ctx.block
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        n_rows, length, _ = logits.shape
        grad_out = grad_out.float()
        for n in range(n_rows):
            for s in range(0, length, block):
                g = grad_out[n, s:s + block, None]  # (b, 1)
                # softmax in float32: a model-dtype block minus a float32 column promotes in one pass
                p = (logits[n, s:s + block] - lse[n, s:s + block, None]).exp_()
                p.mul_(-g).scatter_add_(-1, targets[n, s:s + block, None], g)  # g * (onehot - softmax)
                grad[n, s:s + block] = p
        return grad, None, None


def _logsumexp_fp32(x: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dim with float32 accumulation and one float32 temporary (b, V)."""
    m = x.amax(-1, keepdim=True).float()  # exact in any dtype
    m = m.masked_fill(~torch.isfinite(m), 0.0)  # an all -inf row: exp(-inf) = 0 -> log 0 = -inf, as logsumexp
    return (x - m).exp_().sum(-1).log_().add_(m.squeeze(-1))


def token_logps(logits: torch.Tensor, targets: torch.Tensor, block_bytes: int = DEFAULT_BLOCK_BYTES) -> torch.Tensor:
    """log softmax(logits)[..., targets] in float32, computed in blocks.

    logits: (N, T, V) in any float dtype (a view is fine: it is read block by block, never copied whole);
    targets: (N, T) long. Returns (N, T) float32. Differentiable with respect to `logits`; backward returns a
    gradient in the logits' dtype. `block_bytes` bounds the float32 temporary of one block.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"token_logps: need logits (N, T, V) and targets (N, T); got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    if logits.shape[1] == 0 or logits.shape[0] == 0:
        return logits.new_zeros(logits.shape[:2], dtype=torch.float32) + 0 * logits.sum()
    return _TokenLogps.apply(logits, targets.long(), _block_len(logits.shape[-1], block_bytes))


def reference_token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The plain version `token_logps` replaces (full float32 log-softmax + gather), kept for tests/benchmarks."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def masked_sum(per_token: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_t per_token[n, t]·mask[n, t], Σ_t mask[n, t]), both (N,): the sequence log-prob and its token count."""
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum(-1), mask.sum(-1)
