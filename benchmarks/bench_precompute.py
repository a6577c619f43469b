"""Precompute-pass throughput: length-aware token-budget batching against a plain unsorted batched forward.

Two passes of the precompute stage, each measured both ways on the same sequences (lengths drawn from a
skewed log-normal distribution: most short, a long tail up to --max-len):
  reference   `safealign.dpo.precompute.reference_logps` (Σ log π_ref over response tokens)
  scoring     `safealign.rm.scoring.score_pairs` (reward/cost model scores, tokenization included)
Baseline: the same model calls (`sequence_logps` / `sequence_scores`) over fixed-size batches in input order,
padded to each batch's longest row, with the batch size a plain DataLoader would need to stay inside the same
token budget in the worst case (budget // max_len rows). tokens/s counts real (unpadded) tokens. The two ways
alternate, `--reps` times, so machine load falls on both alike. Target: ≥ 1.3× tokens/s.

    python benchmarks/bench_precompute.py [--quick] [--out FILE]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TARGET = 1.3


def parse_args(argv):
    ap = common.bench_parser(__doc__)
    ap.add_argument("--n", type=int, default=None, help="sequences (default 128; quick 24)")
    ap.add_argument("--max-len", type=int, default=None, help="longest sequence (default 256; quick 64)")
    ap.add_argument("--median-len", type=int, default=None, help="median length (default 48; quick 16)")
    ap.add_argument("--tokens-per-batch", type=int, default=None, help="token budget (default 4096; quick 256)")
    ap.add_argument("--reps", type=int, default=None, help="alternating repetitions (default 3; quick 1)")
    a = common.parse_bench_args(ap, argv)
    q = a.quick
    a.n = a.n or (24 if q else 128)
    a.max_len = a.max_len or (64 if q else 256)
    a.median_len = a.median_len or (16 if q else 48)
    a.tokens_per_batch = a.tokens_per_batch or (256 if q else 4096)
    a.reps = a.reps or (1 if q else 3)
    return a


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(a) -> dict:
    import torch

    from safealign.chat import encode_pair
    from safealign.dpo.data import pad_sequences, sequence_logps
    from safealign.dpo.precompute import reference_logps
    from safealign.rm.modeling import pad_right, sequence_scores
    from safealign.rm.scoring import score_pairs
    from safealign.threads import apply_num_threads

    apply_num_threads(a.threads)  # torch, OpenMP/BLAS and tokenizers pools, and any child process
    size = common.SIZES[a.size]
    tok = common.build_tokenizer(size["vocab"])
    policy = common.build_llama(tok, size).eval()
    rm = common.build_llama(tok, size, seed=1, score_model=True).eval()
    lengths = common.skewed_lengths(a.n, a.max_len, seed=0, median=a.median_len)
    g = torch.Generator().manual_seed(0)
    seqs = [(torch.randint(10, size["vocab"], (n,), generator=g).tolist(), max(1, n // 3)) for n in lengths]
    baseline_bs = max(1, a.tokens_per_batch // a.max_len)

    def ref_sorted():
        return reference_logps(policy, seqs, tok.pad_token_id, a.tokens_per_batch, show_progress=False)

    @torch.no_grad()
    def ref_unsorted():
        out, padded = [], 0
        for s in range(0, len(seqs), baseline_bs):
            chunk = seqs[s:s + baseline_bs]
            ids, attn, resp = pad_sequences([c[0] for c in chunk], [c[1] for c in chunk], tok.pad_token_id)
            padded += ids.numel()
            out += sequence_logps(policy, ids, attn, resp)[0].tolist()
        return out

    # scoring: texts whose formatted length follows the same distribution (template adds ~10 tokens)
    import random

    rng = random.Random(1)
    first = 4 + len(common.TEMPLATE_WORDS)
    words = lambda n: " ".join(f"w{rng.randrange(size['vocab'] - first)}" for _ in range(max(1, n)))  # noqa: E731
    prompts = [words(max(1, (n - 12) // 3)) for n in lengths]
    responses = [words(max(1, n - 12 - (n - 12) // 3)) for n in lengths]

    def score_sorted():
        return score_pairs(rm, tok, prompts, responses, max_length=a.max_len + 16,
                           max_tokens_per_batch=a.tokens_per_batch, show_progress=False)

    def score_unsorted():
        enc = [encode_pair(tok, p, r, max_length=a.max_len + 16)["input_ids"] for p, r in zip(prompts, responses)]
        out = []
        with torch.inference_mode():
            for s in range(0, len(enc), baseline_bs):
                ids, mask = pad_right(enc[s:s + baseline_bs], tok.pad_token_id)
                out += sequence_scores(rm, ids, mask).tolist()
        return out

    enc_lens = [len(encode_pair(tok, p, r, max_length=a.max_len + 16)["input_ids"]) for p, r in zip(prompts, responses)]
    passes = {"reference": (ref_sorted, ref_unsorted, lengths), "scoring": (score_sorted, score_unsorted, enc_lens)}
    results = {}
    for name, (sorted_fn, unsorted_fn, lens) in passes.items():
        times = {"length_sorted": [], "unsorted": []}
        outs = {}
        for r in range(a.reps):
            order = [("length_sorted", sorted_fn), ("unsorted", unsorted_fn)]
            for label, fn in (order if r % 2 == 0 else order[::-1]):  # alternate who goes first
                dt, outs[label] = _timed(fn)
                times[label].append(dt)
        real = sum(lens)
        max_diff = max(abs(x - y) for x, y in zip(outs["length_sorted"], outs["unsorted"]))
        res = {"real_tokens": real, "sequences": len(lens), "max_abs_diff": max_diff,
               "padded_tokens": {"length_sorted": _padded_sorted(lens, a.tokens_per_batch),
                                 "unsorted": _padded_fixed(lens, baseline_bs)}}
        for label, ts in times.items():
            st = common.summarize(ts)
            res[label] = {"seconds": st, "tokens_per_s": real / st["median"]}
            res[label]["padding_efficiency"] = real / res["padded_tokens"][label]
        res["speedup"] = res["length_sorted"]["tokens_per_s"] / res["unsorted"]["tokens_per_s"]
        res["target_ge"] = TARGET
        res["met"] = res["speedup"] >= TARGET
        results[name] = res
        print(f"[precompute] {name}: sorted {res['length_sorted']['tokens_per_s']:.0f} tok/s, unsorted "
              f"{res['unsorted']['tokens_per_s']:.0f} tok/s, speedup {res['speedup']:.2f}×", flush=True)
    out = {"benchmark": "precompute", "args": {k: v for k, v in vars(a).items() if k != "json_out"},
           "model_params": common.param_count(policy), "baseline_batch_size": baseline_bs,
           "length_stats": {"min": min(lengths), "median": sorted(lengths)[len(lengths) // 2], "max": max(lengths),
                            "mean": sum(lengths) / len(lengths)},
           "passes": results, "machine": common.machine_info()}
    out["markdown"] = markdown(out)
    return out


def _padded_sorted(lens, budget):
    from safealign.rm.scoring import token_budget_batches

    return sum(len(b) * max(lens[i] for i in b) for b in token_budget_batches(lens, budget))


def _padded_fixed(lens, bs):
    return sum(len(lens[s:s + bs]) * max(lens[s:s + bs]) for s in range(0, len(lens), bs))


def markdown(res: dict) -> str:
    a, ls = res["args"], res["length_stats"]
    head = (f"Llama {res['model_params'] / 1e6:.1f}M ({a['size']}), {a['n']} sequences, lengths log-normal "
            f"(min {ls['min']}, median {ls['median']}, mean {ls['mean']:.0f}, max {ls['max']}); token budget "
            f"{a['tokens_per_batch']} (baseline: {res['baseline_batch_size']} rows/batch, input order); "
            f"{a['reps']} alternating reps.")
    rows = []
    for name, r in res["passes"].items():
        for label in ("length_sorted", "unsorted"):
            rows.append([name, label, r[label]["seconds"]["median"], r[label]["tokens_per_s"],
                         r[label]["padding_efficiency"], r["speedup"] if label == "length_sorted" else "",
                         ("yes" if r["met"] else "**no**") if label == "length_sorted" else ""])
    return head + "\n\n" + common.md_table(["pass", "batching", "s (median)", "tokens/s", "real/padded tokens",
                                            f"speedup (target ≥ {TARGET})", "met"], rows) + "\n"


def main(argv=None) -> int:
    a = parse_args(argv)
    return common.print_and_save(run(a), a.out, a.json_out)


if __name__ == "__main__":
    sys.exit(main())
