"""Response log-probs at a real vocabulary: the plain float32 log-softmax + gather against
`safealign.logps.token_logps` (block-wise logit[y] - logsumexp), LM head + log-probs, forward and backward.

What is timed and measured: hidden states (N, T, H) -> logits = hidden @ Wᵀ (model dtype) -> per-token
log-probs -> masked sum -> backward to hidden and W. Each (method, dtype) runs in its own subprocess, so its peak
RSS is its own; "added" is the peak minus the RSS after the inputs were built (inputs, weights and their
gradients are the same for both methods). The logits and their gradient are the model's own and stay: what
differs is the float32 (N, T, V) copies the plain version adds.

    python benchmarks/bench_logps.py --threads 1            # N=8, T=256, V=32000 (Mistral's), H=256
    python benchmarks/bench_logps.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

METHODS = ("reference", "chunked")
DTYPES = ("float32", "bfloat16")


def parse_args(argv):
    ap = common.bench_parser(__doc__)
    ap.add_argument("--rows", type=int, default=None, help="N sequences (default 8: 4 pairs; quick 4)")
    ap.add_argument("--positions", type=int, default=None, help="T response positions (default 256; quick 64)")
    ap.add_argument("--vocab", type=int, default=None, help="V (default 32000; quick 8192)")
    ap.add_argument("--hidden", type=int, default=None, help="H (default 256; quick 128)")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per worker (default 3; quick 2)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = common.parse_bench_args(ap, argv)
    q = a.quick
    a.rows = a.rows or (4 if q else 8)
    a.positions = a.positions or (64 if q else 256)
    a.vocab = a.vocab or (8192 if q else 32000)
    a.hidden = a.hidden or (128 if q else 256)
    a.reps = a.reps or (2 if q else 3)
    return a


def worker(a) -> dict:
    import torch

    from safealign.logps import reference_token_logps, token_logps

    torch.set_num_threads(a.threads)
    method, dtype = a.worker.split(":")
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    hidden = (torch.randn(a.rows, a.positions, a.hidden, generator=g)).to(dt).requires_grad_(True)
    weight = (torch.randn(a.vocab, a.hidden, generator=g) * a.hidden ** -0.5).to(dt).requires_grad_(True)
    targets = torch.randint(0, a.vocab, (a.rows, a.positions), generator=g)
    mask = (torch.rand(a.rows, a.positions, generator=g) < 0.9).float()
    fn = token_logps if method == "chunked" else reference_token_logps

    def step():
        logits = hidden @ weight.T
        logp = fn(logits, targets)
        loss = (logp * mask).sum()
        loss.backward()
        return float(loss)

    step()  # warm-up; also allocates the gradients, so the baseline below holds them
    hidden.grad = weight.grad = None
    baseline = common.current_rss_mb()
    times, cpu, value = [], [], None
    for _ in range(a.reps):
        hidden.grad = weight.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        value = step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"method": method, "dtype": dtype, "step_s": common.summarize(times), "step_cpu_s": common.summarize(cpu),
            "loss": value,
            "grad_norm": float(hidden.grad.float().norm()), **common.memory_reading(baseline)}


def run(a) -> dict:
    script = Path(__file__).resolve()
    shared = ["--threads", str(a.threads), "--rows", str(a.rows), "--positions", str(a.positions),
              "--vocab", str(a.vocab), "--hidden", str(a.hidden), "--reps", str(a.reps)]
    runs = {}
    for dtype in DTYPES:
        for method in METHODS:
            key = f"{method}:{dtype}"
            print(f"[logps] {key}", file=sys.stderr, flush=True)
            runs[key] = common.run_worker(script, shared + ["--worker", key])
    logits_mb = a.rows * a.positions * a.vocab * 4 / 2**20
    rows = []
    for dtype in DTYPES:
        ref, new = runs[f"reference:{dtype}"], runs[f"chunked:{dtype}"]
        rows.append([dtype, ref["step_cpu_s"]["median"], new["step_cpu_s"]["median"],
                     new["step_cpu_s"]["median"] / ref["step_cpu_s"]["median"],
                     ref["added_mem_mb"], new["added_mem_mb"],
                     new["added_mem_mb"] / ref["added_mem_mb"] if ref["added_mem_mb"] > 0 else None,
                     abs(new["loss"] - ref["loss"]), abs(new["grad_norm"] - ref["grad_norm"]) / ref["grad_norm"]])
    md = ["# Response log-probs: plain float32 log-softmax vs block-wise (`bench_logps.py`)", "",
          f"N={a.rows} sequences × T={a.positions} positions, V={a.vocab}, H={a.hidden}; one float32 (N, T, V) "
          f"tensor = {logits_mb:.0f} MiB; {a.reps} timed reps after 1 warm-up; torch threads {a.threads}; "
          f"machine {common.machine_name()}, load {common.machine_info()['loadavg_1m']:.2f}", "",
          common.md_table(["dtype", "reference CPU s", "chunked CPU s", "time ratio", "reference added MiB",
                           "chunked added MiB", "memory ratio", "|Δ loss|", "rel Δ grad norm"], rows)]
    return {"settings": {k: getattr(a, k) for k in ("rows", "positions", "vocab", "hidden", "reps", "threads")},
            "machine": common.machine_info(), "runs": runs, "markdown": "\n".join(md)}


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.worker:
        res = worker(a)
        common.write_json_atomic(Path(a.json_out), res)
        return 0
    res = run(a)
    return common.print_and_save(res, a.out, a.json_out)


if __name__ == "__main__":
    raise SystemExit(main())
