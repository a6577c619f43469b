"""Run every benchmark and write `benchmarks/results/<machine>.json` plus a Markdown table beside it.

    python benchmarks/run_all.py                 # the full CPU run (~30 min on 2 shared cores)
    python benchmarks/run_all.py --quick         # smoke run: tiny sizes, results to a temp folder
    python benchmarks/run_all.py --only precompute,generate --machine my-laptop
    python benchmarks/run_all.py --only train_step_lora --merge   # add one benchmark to the existing file

Each benchmark runs as its own subprocess (bench_train_step further runs one subprocess per configuration),
so one benchmark's memory never shows up in another's figures. The GPU benchmark (bench_gpu_mistral.py) is
separate: it needs a CUDA card and a 7B-sized memory budget.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BENCHES = {"train_step": "bench_train_step.py", "train_step_lora": "bench_train_step.py",
           "train_step_recipe": "bench_train_step.py", "precompute": "bench_precompute.py",
           "generate": "bench_generate.py", "logps": "bench_logps.py", "packing": "bench_packing.py"}
# every step benchmark also reports live tensor memory (untimed profiler pass); "recipe" = the settings of
# configs/mistral7b_pku_saferlhf.yaml: LoRA + activation checkpointing
EXTRA_FLAGS = {"train_step": ["--memory-breakdown"], "train_step_lora": ["--lora", "--memory-breakdown"],
               "train_step_recipe": ["--lora", "--checkpointing", "--memory-breakdown"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smallest sizes, one round (smoke run)")
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ",".join(BENCHES))
    ap.add_argument("--machine", default=None, help="name of the result files (default: cpu-<N>core / cuda-<gpu>)")
    ap.add_argument("--out-dir", default=None, help="default benchmarks/results (quick: a temporary folder)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per benchmark process")
    ap.add_argument("--rounds", type=int, default=None, help="train_step rounds (default 3)")
    ap.add_argument("--merge", action="store_true", help="keep the other benchmarks' results already in the file")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    a = ap.parse_args(argv)
    only = [b.strip() for b in a.only.split(",") if b.strip()]
    bad = [b for b in only if b not in BENCHES]
    if bad:
        ap.error(f"--only: unknown {bad}; choose from {', '.join(BENCHES)}")
    machine = a.machine or common.machine_name()
    out_dir = Path(a.out_dir or (tempfile.mkdtemp(prefix="bench-quick-") if a.quick else common.RESULTS))
    here = Path(__file__).resolve().parent
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results, commands = {}, {}
    for name in only:
        flags = ["--threads", str(a.threads)] + (["--quick"] if a.quick else []) + EXTRA_FLAGS.get(name, [])
        if name.startswith("train_step") and a.rounds:
            flags += ["--rounds", str(a.rounds)]
        commands[name] = f"python benchmarks/{BENCHES[name]} " + " ".join(flags)
        print(f"[run_all] {commands[name]}", flush=True)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            code = _run(here / BENCHES[name], flags + ["--out", str(out)])
            if code != 0 or not out.is_file():
                print(f"[run_all] {name} FAILED (exit {code})", file=sys.stderr)
                results[name] = {"error": f"exit {code}"}
                continue
            results[name] = json.loads(out.read_text())
        results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
    report = {"machine_name": machine, "started_utc": started, "quick": a.quick, "note": a.note,
              "machine": common.machine_info(), "commands": commands, "results": results}
    old = out_dir / f"{machine}.json"
    if a.merge and old.is_file():  # earlier runs' benchmarks stay, each with its own start time and command
        prev = json.loads(old.read_text())
        for name, res in prev.get("results", {}).items():
            if name not in results:
                res.setdefault("started_utc", prev.get("started_utc"))
                res.setdefault("note", prev.get("note", ""))
                report["results"][name] = res
                report["commands"][name] = prev.get("commands", {}).get(name, "?")
        report["results"] = {k: report["results"][k] for k in BENCHES if k in report["results"]}
    for name in results:
        results[name].setdefault("started_utc", started)
        results[name].setdefault("note", a.note)
    md = markdown(report)
    common.write_json_atomic(out_dir / f"{machine}.json", report)
    common.write_text_atomic(out_dir / f"{machine}.md", md)
    print(md)
    print(f"[run_all] wrote {out_dir / (machine + '.json')} and .md")
    return 1 if any("error" in r for r in results.values()) else 0


def _run(script: Path, args: list[str]) -> int:
    import subprocess

    # output streams through, so progress shows while it runs
    return subprocess.run([sys.executable, str(script), *args], cwd=common.REPO).returncode


def markdown(rep: dict) -> str:
    m = rep["machine"]
    lines = [f"# Benchmarks on `{rep['machine_name']}`", "",
             f"- {m['cpu']} × {m['cpu_count']} cores; torch {m['torch']}, "
             f"transformers {m.get('transformers')}, trl {m.get('trl')}; GPU: {m.get('gpu', 'none')}"
             + ("; QUICK (smoke) run: sizes too small to mean anything" if rep["quick"] else ""),
             ""]
    titles = {"train_step": "Training step (full fine-tuning)", "train_step_lora": "Training step (LoRA)",
              "train_step_recipe": "Training step (LoRA + activation checkpointing: the 7B recipe's settings)",
              "logps": "Response log-probs: full fp32 log-softmax vs block-wise (logps.token_logps)",
              "packing": "Padding-free packing vs padded batches (PKU-like lengths)",
              "precompute": "Precompute pass", "generate": "Generation"}
    for name, res in rep["results"].items():
        lines += [f"## {titles[name]}", "", f"Command: `{rep['commands'][name]}` (started {res.get('started_utc')})",
                  ""] + ([f"Conditions: {res['note']}", ""] if res.get("note") else [])
        lines += [res.get("markdown", f"FAILED: {res.get('error')}"), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
