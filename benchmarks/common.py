"""Shared harness for the benchmark scripts: model/tokenizer builders, synthetic data, timing statistics,
peak-memory readings, one-subprocess-per-configuration runs, result files.

Why a subprocess per configuration: peak RSS (`ru_maxrss`) only ever grows inside a process, so two
configurations measured in one process would report the larger peak for both. Each worker is a fresh
interpreter whose `ru_maxrss` is that configuration's peak; the baseline RSS after imports (the same for all
configurations) is reported beside it so the figures can also be read as "memory the trainer added".
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
if str(REPO / "src") not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would garble the figures; the harness prints its own

# Model sizes. `small` is the CPU default (~30M parameters, Llama architecture); `quick` is for smoke runs.
SIZES = {
    "quick": dict(hidden=64, layers=2, heads=4, intermediate=192, vocab=512),
    "small": dict(hidden=512, layers=8, heads=8, intermediate=1408, vocab=8192),
    "medium": dict(hidden=768, layers=12, heads=12, intermediate=2048, vocab=8192),
}
TEMPLATE_WORDS = ["BEGINNING", "OF", "CONVERSATION", "USER", "ASSISTANT", ":"]


# ----------------------------------------------------------------------------- statistics and memory
def summarize(values: list[float]) -> dict:
    """median, quartiles, min, max, n and the relative spread (IQR / median) of a list of timings."""
    v = sorted(values)
    if not v:
        return {"n": 0}
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0], v[0], v[0]]
    med = statistics.median(v)
    return {"median": med, "p25": q[0], "p75": q[2], "min": v[0], "max": v[-1], "n": len(v),
            "iqr_rel": (q[2] - q[0]) / med if med else 0.0}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def reset_cuda_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def memory_reading(baseline_mb: float | None = None) -> dict:
    """Peak memory of this process: CUDA max allocated on a GPU, else peak RSS (and RSS added since baseline)."""
    import torch

    if torch.cuda.is_available():
        return {"peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20, "memory_kind": "cuda_max_allocated"}
    peak = peak_rss_mb()
    out = {"peak_mem_mb": peak, "memory_kind": "process_peak_rss"}
    if baseline_mb is not None:
        out["baseline_rss_mb"] = baseline_mb
        out["added_mem_mb"] = peak - baseline_mb
    return out


def machine_info() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "cpu": _cpu_model(), "torch_threads": torch.get_num_threads()}
    try:
        import transformers
        import trl

        info.update(transformers=transformers.__version__, trl=trl.__version__)
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    info["loadavg_1m"] = os.getloadavg()[0]
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_name() -> str:
    """A stable, descriptive name for result files: `cpu-2core` here, `cuda-nvidia-h200` on a GPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda-" + torch.cuda.get_device_name().lower().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core"


# ----------------------------------------------------------------------------- tokenizer, models, data
def build_tokenizer(vocab_size: int):
    """A word-level tokenizer over the words w0..wN (one word = one token), so lengths are exact and known.

    The chat template's words are in the vocabulary, so formatting adds a fixed handful of tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from safealign.chat import DEFAULT_CHAT_TEMPLATE

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    words = specials + TEMPLATE_WORDS
    words += [f"w{i}" for i in range(vocab_size - len(words))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.chat_template = DEFAULT_CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


def build_llama(tokenizer, size: dict, seed: int = 0, score_model: bool = False):
    """A random-weight Llama causal LM (or a 1-label sequence-classification model: a reward model)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=size["hidden"], intermediate_size=size["intermediate"],
                      num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                      num_key_value_heads=size["heads"], max_position_embeddings=2048,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, num_labels=1)
    torch.manual_seed(seed)
    model = (LlamaForSequenceClassification if score_model else LlamaForCausalLM)(cfg)
    if not score_model:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_models(workdir: Path, size: dict, with_rms: bool = True) -> dict:
    """Save the policy, and optionally a helpful RM and a cost model (same architecture), with the tokenizer."""
    tok = build_tokenizer(size["vocab"])
    paths = {"policy": workdir / "policy"}
    policy = build_llama(tok, size, seed=0)
    policy.save_pretrained(paths["policy"], safe_serialization=True)
    tok.save_pretrained(paths["policy"])
    info = {"policy_params": param_count(policy)}
    if with_rms:
        for i, name in enumerate(("helpful_rm", "harmless_rm"), 1):
            paths[name] = workdir / name
            rm = build_llama(tok, size, seed=i, score_model=True)
            rm.save_pretrained(paths[name], safe_serialization=True)
            tok.save_pretrained(paths[name])
            info[f"{name}_params"] = param_count(rm)
    return {"paths": {k: str(v) for k, v in paths.items()}, **info}


def _words(rng, n: int, vocab: int) -> str:
    first = 4 + len(TEMPLATE_WORDS)
    return " ".join(f"w{rng.randrange(vocab - first)}" for _ in range(max(1, n)))


def synthetic_records(n: int, prompt_len: int, response_len: int, vocab: int, seed: int = 0,
                      vary: bool = False) -> list[dict]:
    """Canonical preference records (docs/DESIGN.md schema) of random words; `vary`: lengths in [½, 1]×max."""
    import random

    rng = random.Random(seed)

    def length(m):
        return rng.randint(max(1, m // 2), m) if vary else m

    rows = []
    for i in range(n):
        rows.append({"id": f"r{i}", "prompt": _words(rng, length(prompt_len), vocab),
                     "response_0": _words(rng, length(response_len), vocab),
                     "response_1": _words(rng, length(response_len), vocab),
                     "better_response_id": rng.randint(0, 1), "safer_response_id": rng.randint(0, 1),
                     "is_response_0_safe": True, "is_response_1_safe": False, "harm_categories": [],
                     "severity": None, "is_harmful_prompt": True, "source": "synthetic"})
    return rows


def skewed_lengths(n: int, max_len: int, seed: int = 0, median: int = 48, sigma: float = 0.9) -> list[int]:
    """Lengths from a log-normal (long right tail: most short, a few near max_len), clipped to [8, max_len]."""
    import math
    import random

    rng = random.Random(seed)
    return [int(min(max_len, max(8, round(rng.lognormvariate(math.log(median), sigma))))) for _ in range(n)]


# ----------------------------------------------------------------------------- workers and files
def bench_parser(doc: str, threads_help: str = "torch threads"):
    """The flags every CPU benchmark script shares: --quick, --size, --threads, --out and the internal
    --json-out (how `run_worker` and `run_all.py` collect its figures). Finish with `parse_bench_args`."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smallest sizes (smoke run)")
    ap.add_argument("--size", choices=list(SIZES), default=None, help="model size (default: small; quick: quick)")
    ap.add_argument("--threads", type=int, default=1, help=threads_help)
    ap.add_argument("--out", default=None, help="write the JSON results here")
    ap.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    return ap


def parse_bench_args(ap, argv):
    """Parse, then default --size by --quick (the scripts default their own flags after this)."""
    a = ap.parse_args(argv)
    a.size = a.size or ("quick" if a.quick else "small")
    return a


def run_worker(script: Path, args: list[str], timeout: float = 1800) -> dict:
    """Run `python script *args --json-out F` in a fresh interpreter and return the JSON it wrote."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(script), *args, "--json-out", str(out)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise RuntimeError(f"worker {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
        res = json.loads(out.read_text())
        res["worker_wall_s"] = round(time.perf_counter() - t0, 2)
        return res


def print_and_save(res: dict, *paths) -> int:
    """A benchmark script's ending: print its Markdown, write its JSON to each given path (--out, --json-out)."""
    print(res["markdown"])
    for path in paths:
        if path:
            write_json_atomic(Path(path), res)
    return 0


def write_json_atomic(path: Path, obj) -> None:
    from safealign.fileio import write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


def write_text_atomic(path: Path, text: str) -> None:
    from safealign.fileio import write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
