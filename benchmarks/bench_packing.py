"""Padding-free packing against the padded batch: tokens/s of the policy's forward + backward on a PKU-like,
skewed length distribution.

Lengths: prompt and response word counts are log-normal (`common.skewed_lengths`); their median and spread are
fitted to the real PKU-SafeRLHF rows in ../shared/data/real/pku_saferlhf/ when present (else the fit recorded
below), then scaled by --scale (1.3 ≈ Mistral tokens per English word; the benchmark tokenizer maps a word to a
token). Records go through the real path: `tokenize_records` (chat template, truncation to --max-length),
`PairCollator` ([y_0; y_1] right-padded), then per micro-batch, interleaved:

  padded   dpo.data.sequence_logps (the default trainer path)
  packed   dpo.packing.packed_sequence_logps, rows as long as the longest sequence (the sdpa/eager default)
  one_row  the same with every sequence in one row (the flash-attention layout; on sdpa its attention is
           quadratic in the row, shown for reference)

A timed unit = forward + backward of Σ log-probs for one micro-batch (the optimizer step does not depend on the
layout). Figures: real tokens/s on CPU time (process_time, 1 thread: robust to load from other processes) and
on wall time, padding fraction of the padded batches, fill of the packed rows.

    python benchmarks/bench_packing.py --threads 1          # small Llama (30M), 4 pairs per micro-batch
    python benchmarks/bench_packing.py --quick
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PKU = common.REPO.parent / "shared" / "data" / "real" / "pku_saferlhf"
# fit of the 10 real rows (words): used when the shared data is absent
FALLBACK_FIT = {"prompt": (28.0, 0.4), "response": (89.0, 0.45)}
METHODS = ("padded", "packed", "one_row")


def parse_args(argv):
    ap = common.bench_parser(__doc__)
    ap.add_argument("--pairs", type=int, default=None, help="pairs per micro-batch (default 4; quick 2)")
    ap.add_argument("--batches", type=int, default=None, help="timed micro-batches (default 6; quick 2)")
    ap.add_argument("--max-length", type=int, default=512, help="dpo.max_length (prompt + response tokens)")
    ap.add_argument("--scale", type=float, default=1.3, help="tokens per word applied to the fitted lengths")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    a = common.parse_bench_args(ap, argv)
    a.pairs = a.pairs or (2 if a.quick else 4)
    a.batches = a.batches or (2 if a.quick else 6)
    a.methods = [m for m in a.methods.split(",") if m]
    return a


def fit_lengths() -> tuple[dict, str]:
    """(median, sigma) of log word counts for prompts and responses, from the real rows when present."""
    files = sorted(PKU.glob("*.jsonl")) if PKU.is_dir() else []
    if not files:
        return FALLBACK_FIT, "fallback fit (shared data absent)"
    rows = [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = {}
    for kind, texts in (("prompt", [r["prompt"] for r in rows]),
                        ("response", [r[k] for r in rows for k in ("response_0", "response_1")])):
        logs = [math.log(max(1, len(t.split()))) for t in texts]
        out[kind] = (math.exp(statistics.median(logs)), statistics.pstdev(logs))
    return out, f"fitted to {len(rows)} real rows in {PKU.relative_to(common.REPO.parent)}"


def records(a, fit: dict, n: int, vocab: int) -> list[dict]:
    import random

    rng = random.Random(0)
    (pm, ps), (rm, rs) = fit["prompt"], fit["response"]
    plen = common.skewed_lengths(n, a.max_length // 2, seed=1, median=round(pm * a.scale), sigma=ps)
    rlen = common.skewed_lengths(2 * n, a.max_length, seed=2, median=round(rm * a.scale), sigma=rs)
    words = lambda k: " ".join(f"w{rng.randrange(vocab - 20)}" for _ in range(k))  # noqa: E731
    return [{"prompt": words(plen[i]), "response_0": words(rlen[2 * i]), "response_1": words(rlen[2 * i + 1]),
             "better_response_id": i % 2, "safer_response_id": (i // 2) % 2} for i in range(n)]


def run(a) -> dict:
    import torch

    from safealign.dpo.data import PairCollator, sequence_logps, tokenize_records
    from safealign.dpo.packing import pack_batch, packed_sequence_logps

    torch.set_num_threads(a.threads)
    size = common.SIZES[a.size]
    tok = common.build_tokenizer(size["vocab"])
    model = common.build_llama(tok, size).train()
    fit, source = fit_lengths()
    n = a.pairs * (a.batches + 1)
    feats = tokenize_records(records(a, fit, n, size["vocab"]), tok, a.max_length, a.max_length // 2)
    collate = PairCollator(tok.pad_token_id)
    batches = [collate(feats[i:i + a.pairs]) for i in range(0, n, a.pairs)]
    fns = {"padded": sequence_logps,
           "packed": lambda m, *x: packed_sequence_logps(m, *x, row_capacity=0),
           "one_row": lambda m, *x: packed_sequence_logps(m, *x, row_capacity=None)}

    def unit(method, b):
        model.zero_grad(set_to_none=True)
        logps, _ = fns[method](model, b["input_ids"], b["attention_mask"], b["response_mask"])
        logps.sum().backward()

    for method in a.methods:  # warm-up on the extra batch
        unit(method, batches[-1])
    cpu = {m: [] for m in a.methods}
    wall = {m: [] for m in a.methods}
    real = padded = rows_tokens = 0
    for i, b in enumerate(batches[:-1]):
        real += int(b["attention_mask"].sum())
        padded += b["input_ids"].numel()
        pk = pack_batch(b["input_ids"], b["attention_mask"], b["response_mask"], row_capacity=0)
        rows_tokens += pk.input_ids.numel()
        for method in a.methods[i % len(a.methods):] + a.methods[:i % len(a.methods)]:  # rotated order
            t0, c0 = time.perf_counter(), time.process_time()
            unit(method, b)
            wall[method].append(time.perf_counter() - t0)
            cpu[method].append(time.process_time() - c0)
    res = {m: {"cpu_s": sum(cpu[m]), "wall_s": sum(wall[m]), "tokens_per_cpu_s": real / sum(cpu[m]),
               "tokens_per_wall_s": real / sum(wall[m])} for m in a.methods}
    lengths = [int(x) for b in batches[:-1] for x in b["attention_mask"].sum(-1)]
    info = {"real_tokens": real, "padded_tokens": padded, "padding_fraction": 1 - real / padded,
            "packed_row_tokens": rows_tokens, "packed_fill": real / rows_tokens,
            "sequence_length_median": statistics.median(lengths), "sequence_length_max": max(lengths),
            "length_fit": {k: [round(v[0], 1), round(v[1], 3)] for k, v in fit.items()}, "length_source": source}
    base = res.get("padded")
    rows = [[m, r["cpu_s"], r["tokens_per_cpu_s"], r["tokens_per_wall_s"],
             (r["tokens_per_cpu_s"] / base["tokens_per_cpu_s"]) if base else None] for m, r in res.items()]
    md = ["# Padding-free packing (`bench_packing.py`)", "",
          f"Llama {common.param_count(model) / 1e6:.1f}M ({a.size}), {a.pairs} pairs per micro-batch "
          f"({2 * a.pairs} sequences), {a.batches} timed micro-batches, max_length {a.max_length}; lengths: "
          f"log-normal words × {a.scale} ({source}: prompt median {fit['prompt'][0]:.0f} σ {fit['prompt'][1]:.2f}, "
          f"response median {fit['response'][0]:.0f} σ {fit['response'][1]:.2f}); sequence length median "
          f"{info['sequence_length_median']:.0f}, max {info['sequence_length_max']}; torch threads {a.threads}; "
          f"machine {common.machine_name()}, load {common.machine_info()['loadavg_1m']:.2f}", "",
          f"Padding fraction of the padded batches: **{info['padding_fraction']:.1%}**; packed rows filled to "
          f"{info['packed_fill']:.1%}.", "",
          common.md_table(["layout", "CPU s (all batches)", "real tokens / CPU s", "real tokens / wall s",
                           "speed-up (CPU)"], rows)]
    return {"settings": {k: getattr(a, k) for k in ("size", "pairs", "batches", "max_length", "scale", "threads")},
            "machine": common.machine_info(), "layout": info, "results": res, "markdown": "\n".join(md)}


def main(argv=None) -> int:
    a = parse_args(argv)
    return common.print_and_save(run(a), a.out, a.json_out)


if __name__ == "__main__":
    raise SystemExit(main())
