"""What a model costs to run: parameters, disk size, generation tokens/s and peak memory, measured the same
way for every model on the same machine so base, teacher and student compare.

Throughput is measured on a fixed workload: the same prompts, greedy decoding, and exactly `max_new_tokens`
new tokens per prompt (`min_new_tokens` equal to it, so a model that stops early does not look faster), after
one untimed warm-up batch; the workload runs `repeats` times and the fastest run counts (on a shared
machine other processes only ever slow a run down; the median is recorded too). `measure_models` runs the
repeats in rounds over the models, each model loaded afresh per round. Memory: on CUDA the peak of
`torch.cuda.max_memory_allocated` over loading plus generation; on CPU the peak resident-set size over the
same span minus the RSS before loading, sampled every few milliseconds by a background thread (the
process-wide `ru_maxrss` cannot be reset between models).

It lives with the evaluation because it is a measurement of a model like the others, and the report formats
its table (`efficiency_markdown`); the distillation stage runs it for base, teacher and student.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path
from typing import Sequence

import psutil
import torch
from huggingface_hub import snapshot_download
from tqdm.auto import tqdm

from ..chat import prompt_text
from ..fileio import write_json, write_text
from ..models.loading import count_parameters, load_causal_lm, load_tokenizer


def disk_bytes(path: str | os.PathLike) -> int | None:
    """Total size of the files of a model folder (weights, tokenizer, configs); for a Hub id, of its snapshot
    in the local Hub cache (None when it is not there)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if not p.exists():
        try:
            p = Path(snapshot_download(str(path), local_files_only=True))
        except Exception:  # noqa: BLE001 - not a cached Hub id: size unknown
            return None
    # Hub snapshots hold symlinks to blobs: stat() follows them to the real sizes.
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))


class _RssSampler:
    """Peak RSS of this process while active (a thread polls /proc through psutil)."""

    def __init__(self, interval: float = 0.005):
        self._proc = psutil.Process()
        self.interval = interval
        self.start_rss = self._proc.memory_info().rss
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def measure_efficiency(model_path: str | os.PathLike, prompts: Sequence[str], *, max_new_tokens: int = 32,
                       batch_size: int = 8, dtype: str = "auto", repeats: int = 3) -> dict:
    """Load `model_path`, generate for `prompts` on the fixed workload above; return the figures."""
    if not prompts:
        raise ValueError("measure_efficiency: no prompts")
    cuda = torch.cuda.is_available()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base_alloc = torch.cuda.memory_allocated()
    with _RssSampler() as rss:
        t_load = time.perf_counter()
        tok = load_tokenizer(str(model_path), padding_side="left")
        model = load_causal_lm(str(model_path), dtype=dtype)
        if cuda:
            model = model.to("cuda")
        model.eval()
        load_seconds = time.perf_counter() - t_load
        device = next(model.parameters()).device
        texts = [prompt_text(tok, p) for p in prompts]
        batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]

        def run(batch):
            enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                     do_sample=False, temperature=None, top_p=None, top_k=None,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            return (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]

        run(batches[0][:2])  # warm-up (kernels, allocator), untimed
        if cuda:
            torch.cuda.synchronize()
        timings = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            new_tokens = sum(run(b) for b in batches)
            if cuda:
                torch.cuda.synchronize()
            timings.append(time.perf_counter() - t0)
        seconds = min(timings)  # a busy machine only slows a run down: the fastest repeat is the closest
    total, _ = count_parameters(model)
    result = {
        "model_path": str(model_path),
        "parameters": total,
        "disk_mb": (lambda b: None if b is None else b / 2**20)(disk_bytes(model_path)),
        "tokens_per_second": new_tokens / seconds if seconds > 0 else None,
        "generated_tokens": new_tokens,
        "generation_seconds": seconds,
        "tokens_per_second_median": new_tokens / sorted(timings)[len(timings) // 2],
        "repeats": repeats,
        "load_seconds": load_seconds,
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)",
    }
    if cuda:
        result["peak_memory_mb"] = (torch.cuda.max_memory_allocated() - base_alloc) / 2**20
        result["memory_kind"] = "cuda_max_allocated"
    else:
        result["peak_memory_mb"] = (rss.peak - rss.start_rss) / 2**20
        result["memory_kind"] = "cpu_rss_delta"
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def efficiency_markdown(rows: dict[str, dict]) -> str:
    """The side-by-side table, with each model's size and speed relative to the first row."""
    names = list(rows)
    ref = rows[names[0]] if names else {}
    lines = ["# Efficiency", "",
             "Measured in one process on the same machine: greedy decoding, a fixed number of new tokens per "
             "prompt, after a warm-up batch; tokens/s of the fastest of several runs.", "",
             "| model | parameters | disk (MB) | tokens/s | peak memory (MB) | params vs " + (names[0] if names else "")
             + " | speed vs " + (names[0] if names else "") + " |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in names:  # missing figures (an older or partial efficiency.json) print as "–"
        r = rows[name]
        cells = [_fmt(r.get("parameters"), "{:,}"), _fmt(r.get("disk_mb"), "{:.2f}"),
                 _fmt(r.get("tokens_per_second"), "{:.1f}"), _fmt(r.get("peak_memory_mb"), "{:.1f}"),
                 _fmt(_ratio(r.get("parameters"), ref.get("parameters")), "{:.2f}x"),
                 _fmt(_ratio(r.get("tokens_per_second"), ref.get("tokens_per_second")), "{:.2f}x")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if names and all(k in ref for k in ("device", "prompts", "max_new_tokens", "batch_size", "memory_kind")):
        lines += ["", f"Device: {ref['device']}; {ref['prompts']} prompts × {ref['max_new_tokens']} new tokens, batch "
                      f"{ref['batch_size']}; memory = {ref['memory_kind']}."]
    return "\n".join(lines) + "\n"


def _ratio(a, b):
    return a / b if a is not None and b else None


def _fmt(value, spec: str) -> str:
    return "–" if value is None else spec.format(value)


def measure_models(models: dict[str, str], prompts: Sequence[str], results_dir: str | os.PathLike, *,
                   max_new_tokens: int = 32, batch_size: int = 8, repeats: int = 3) -> dict[str, dict]:
    """Measure each NAME -> path; write `<results>/<NAME>/efficiency.json` and `<results>/efficiency.md`."""
    results_dir = Path(results_dir)
    rows: dict[str, dict] = {}
    if models:
        # One-time costs (library imports, allocator pools) must not be charged to whichever model comes
        # first: warm up on the smallest model (cheap) and discard the figures.
        smallest = min(models.values(), key=lambda p: disk_bytes(p) or float("inf"))
        measure_efficiency(smallest, list(prompts)[:2], max_new_tokens=2, batch_size=2, repeats=1)
    # Rounds over the models (A B C, A B C, ...) rather than all repeats of one model in a row: a burst of
    # load from other processes then slows every model alike instead of one of them.
    runs: dict[str, list[dict]] = {name: [] for name in models}
    bar = tqdm(total=repeats * len(models), desc="efficiency", unit="run")
    for _ in range(repeats):
        for name, path in models.items():
            runs[name].append(measure_efficiency(path, prompts, max_new_tokens=max_new_tokens,
                                                 batch_size=batch_size, repeats=1))
            bar.update(1)
    bar.close()
    for name, results in runs.items():
        speeds = sorted(r["tokens_per_second"] for r in results)
        row = max(results, key=lambda r: r["tokens_per_second"])  # the fastest run (see the module docstring)
        row.update(tokens_per_second_median=speeds[len(speeds) // 2], repeats=repeats,
                   peak_memory_mb=max(r["peak_memory_mb"] for r in results))
        rows[name] = row
        write_json(results_dir / name / "efficiency.json", row)
    write_json(results_dir / "efficiency.json", rows)
    write_text(results_dir / "efficiency.md", efficiency_markdown(rows))
    return rows
