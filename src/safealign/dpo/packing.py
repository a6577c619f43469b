"""Padding-free forward for the stacked responses: pack the micro-batch's sequences into few rows.

Why: PKU-SafeRLHF answers vary widely in length, so a right-padded (2B, L_max) batch of [y_0; y_1] spends a
large share of its tokens on padding (benchmarks/bench_packing.py measures it). Packing puts the real tokens of
all 2B sequences back to back, with `position_ids` restarting at 0 for each sequence, and no 2-D attention
mask. transformers 5.x reads such position_ids as packed sequences (masking_utils.find_packed_sequence_indices):
`flash_attention_2` runs its varlen kernel on them, `sdpa`/`eager`/`flex_attention` get a block-diagonal causal
mask, so no token attends across a sequence boundary and each sequence sees exactly the positions and context
of its padded row. Log-probs are then summed per sequence.

Rows: with flash-attention (cost per sequence) everything goes into ONE row. With a dense mask (sdpa, eager:
cost quadratic in the row length) the sequences are spread over ⌈tokens / longest⌉ balanced rows, so a row
costs about the attention of a padded row while the rows are nearly full.

Only columns that predict a response token go through the LM head (`logits_to_keep` as column indices), fewer than the
padded path's "from the earliest response position of the batch on" window.
"""

from __future__ import annotations

import dataclasses

import torch

from ..logps import token_logps
from .data import sequence_logps

ONE_ROW_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")  # cost ~ per sequence, not row²


@dataclasses.dataclass
class PackedBatch:
    """N right-padded sequences re-laid as R packed rows of C tokens.

    input_ids, position_ids, seq_index, target_mask: (R, C). seq_index[r, c] = the sequence (0..N-1) that
    token belongs to, -1 for the filler at a row's end. target_mask[r, c]: the token at c+1 is a response
    token of the same sequence (position c predicts it). real_tokens: Σ lengths; padded_tokens: N · L_max.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    seq_index: torch.Tensor
    target_mask: torch.Tensor
    num_sequences: int
    real_tokens: int
    padded_tokens: int


def _rows(lengths: list[int], capacity: int | None) -> list[list[int]]:
    """Sequence indices per row: all in one row (capacity None), else R = ⌈Σ lengths / max(capacity, longest)⌉
    rows filled longest-first into the currently shortest row (balanced: a row exceeds the target length by
    less than one sequence, and pairs of half-length sequences share a row, which a strict bin would refuse)."""
    if capacity is None:
        return [list(range(len(lengths)))]
    target = max(capacity, max(lengths))
    n_rows = max(1, -(-sum(lengths) // target))
    rows: list[list[int]] = [[] for _ in range(n_rows)]
    used = [0] * n_rows
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = min(range(n_rows), key=used.__getitem__)
        rows[r].append(i)
        used[r] += lengths[i]
    return [sorted(r) for r in rows if r]


def pack_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor,
               row_capacity: int | None = None, filler_id: int = 0) -> PackedBatch:
    """Pack the real tokens of right-padded (N, L) tensors (as `PairCollator` builds them) into rows.

    row_capacity: None = one row; an int = balanced rows of about max(row_capacity, longest sequence) tokens.
    A row shorter than the longest row is filled with `filler_id` tokens whose positions restart at 0 (their own
    block: nothing real attends to them and they predict nothing).
    """
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape or response_mask.shape != input_ids.shape:
        raise ValueError(f"pack_batch: need three (N, L) tensors; got {tuple(input_ids.shape)}, "
                         f"{tuple(attention_mask.shape)}, {tuple(response_mask.shape)}")
    lengths = attention_mask.sum(-1).tolist()
    width = input_ids.shape[1]
    if any(attention_mask[i, :n].sum() != n for i, n in enumerate(lengths)):
        raise ValueError("pack_batch: attention_mask must be right-padded (ones first, then zeros)")
    rows = _rows([max(n, 1) for n in lengths], row_capacity)
    cols = max(sum(lengths[i] for i in r) for r in rows)
    device = input_ids.device
    ids = torch.full((len(rows), cols), filler_id, dtype=input_ids.dtype, device=device)
    pos = torch.zeros((len(rows), cols), dtype=torch.long, device=device)
    seq = torch.full((len(rows), cols), -1, dtype=torch.long, device=device)
    tgt = torch.zeros((len(rows), cols), dtype=torch.bool, device=device)
    for r, members in enumerate(rows):
        c = 0
        for i in members:
            n = lengths[i]
            ids[r, c:c + n] = input_ids[i, :n]
            pos[r, c:c + n] = torch.arange(n, device=device)
            seq[r, c:c + n] = i
            if n > 1:  # position j predicts token j+1 of the same sequence; the last token predicts nothing
                tgt[r, c:c + n - 1] = response_mask[i, 1:n].bool()
            c += n
        pos[r, c:] = torch.arange(cols - c, device=device)  # filler: its own block
    return PackedBatch(ids, pos, seq, tgt, num_sequences=len(lengths), real_tokens=int(sum(lengths)),
                       padded_tokens=len(lengths) * width)


def attention_implementation(model) -> str:
    """The attention kernel the (possibly PEFT- or DDP-wrapped) model runs, e.g. "sdpa"."""
    inner = getattr(model, "module", model)  # DDP; PEFT forwards `.config` to the base model itself
    return str(getattr(getattr(inner, "config", None), "_attn_implementation", None) or "sdpa")


def packed_sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          response_mask: torch.Tensor, row_capacity: int | None | str = "auto"
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as `dpo.data.sequence_logps` ((N,) sums of response log-probs and (N,) token counts), from
    one packed forward instead of the padded one.

        logp_i = Σ_{t: response} log π(y_t | y_<t of sequence i)          (N,)

    row_capacity "auto": one row under flash/flex attention, else balanced rows about as long as the longest
    sequence.
    """
    if row_capacity == "auto":
        row_capacity = None if attention_implementation(model) in ONE_ROW_ATTENTION else 0
    packed = pack_batch(input_ids, attention_mask, response_mask, row_capacity)
    n = packed.num_sequences
    keep = packed.target_mask
    if not bool(keep.any()):  # no response token anywhere: zero sums that still reach the graph
        logits = model(input_ids=packed.input_ids[:, :1], position_ids=packed.position_ids[:, :1],
                       use_cache=False, logits_to_keep=1).logits
        zero = logits.sum() * 0.0
        return torch.zeros(n, device=logits.device) + zero, torch.zeros(n, device=logits.device)
    # logits_to_keep as documented: a 1-D tensor of column indices (a 2-D boolean mask only works on some
    # transformers versions). The columns any row needs; the (R, K) mask then picks each row's own.
    cols = keep.any(0).nonzero().squeeze(1)  # (K,) ascending, so the selection order matches `keep`'s
    sel = keep[:, cols]  # (R, K)
    out = model(input_ids=packed.input_ids, position_ids=packed.position_ids, attention_mask=None,
                use_cache=False, logits_to_keep=cols)
    logits = out.logits
    if logits.shape[1] != cols.numel():  # a model that ignores logits_to_keep returns every position
        logits = logits[:, cols]
    logits = logits[sel]  # (M, V)
    targets = packed.input_ids.roll(-1, dims=1)[:, cols][sel]  # token c+1 of the row = token j+1 of the sequence
    logp = token_logps(logits.unsqueeze(0), targets.unsqueeze(0))[0]  # (M,) float32
    owner = packed.seq_index[:, cols][sel]
    sums = torch.zeros(n, dtype=logp.dtype, device=logp.device).index_add(0, owner, logp)
    counts = torch.zeros(n, dtype=logp.dtype, device=logp.device).index_add(0, owner, torch.ones_like(logp))
    return sums, counts


def sequence_logps_fn(padding_free: bool):
    """The trainer's choice: `packed_sequence_logps` when dpo.padding_free, else the padded `sequence_logps`."""
    if padding_free:
        return packed_sequence_logps
    return sequence_logps
