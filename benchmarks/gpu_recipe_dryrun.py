"""GPU dry run of the real recipe: configs/mistral7b_pku_saferlhf.yaml through the real CLI stages on a random
Mistral-7B-shaped bf16 model, the real Mistral tokenizer and PKU-SafeRLHF-sized synthetic data, a few steps
per stage; per stage tokens/s, step time and peak memory, and the projected wall time of the full recipe.

    bash benchmarks/gpu_recipe_dryrun.sh --tokenizer DIR --out $OUT          # one GPU, ~8-10 min
    bash benchmarks/gpu_recipe_dryrun.sh --tiny --tokenizer DIR --out /tmp/d # the same path on a CPU, < 1 min

Stages (each `safealign ...` with the recipe file and `--set` bounds only; dryrun_probe.py times them):
  setup        the random base model (dryrun_data.build_model) + 74k synthetic PKU 2024 rows + eval prompts
  prepare      `safealign prepare` on the full-size file (the recipe's 90/5/5 split by prompt)
  helpful_rm, harmless_rm   `safealign train-rm`, reward.max_steps bounded, on a subset of the split
  dpo          `safealign train-dpo`: the precompute pass (reference + both judges) then dpo.max_steps steps,
               export (LoRA merged, as the recipe sets)
  generation   `safealign evaluate safety` of the aligned model: the recipe's max_new_tokens and batch size,
               judged by the trained cost model (helpfulness off: it would generate twice more)
On a GPU each stage is its own process (its peak memory is its own); with --tiny all run in one process
(--isolate: separate ones there too). Results: $OUT/gpu_recipe_dryrun.json (every stage's record, written
after each stage), .md (tables), stages.log (the stages' output; setup's and the summary go to stdout).
The projection (dryrun_report.py) scales the measured rates to the recipe's data, epochs, batches and
evaluation schedule; 8 GPUs = ideal data parallelism of the compute, fixed costs (loading, export) unchanged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: F401 - sys.path to src/, offline environment variables
import dryrun_data as data
import dryrun_report as report
from dryrun_probe import Probe

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECIPE = REPO / "configs" / "mistral7b_pku_saferlhf.yaml"
GIB = 2**30

# How much of each stage runs. gpu: the recipe's batch sizes and lengths; tiny: a CPU check of the same path.
SIZES = {
    "gpu": dict(full_pairs=74000, subset_train=192, subset_val=64, rm_steps=6, dpo_steps=3, gen_prompts=32,
                sets=[]),
    "tiny": dict(full_pairs=300, subset_train=8, subset_val=4, rm_steps=2, dpo_steps=2, gen_prompts=4,
                 sets=["model.dtype=float32", "reward.use_cpu=true", "dpo.use_cpu=true",
                       "reward.per_device_train_batch_size=2", "reward.per_device_eval_batch_size=4",
                       "reward.max_length=128", "dpo.per_device_train_batch_size=2",
                       "dpo.gradient_accumulation_steps=2", "dpo.per_device_eval_batch_size=4", "dpo.max_length=128",
                       "dpo.max_prompt_length=64", "eval.max_new_tokens=8", "eval.batch_size=4"]),
}
# The base model needs this much room besides two merged judges and the merged policy (bf16, 7.24 B).
MODEL_GIB = 14.5


def _sets(*pairs: str) -> list[str]:
    return [x for kv in pairs for x in ("--set", kv)]


def stage_argv(name: str, ctx: dict) -> list[str]:
    """The CLI arguments of stage `name`: the recipe file, the run folder, and the dry run's bounds."""
    s, run = ctx["sizes"], ctx["run"]
    common_args = ["--config", str(RECIPE), "--run-dir", str(run), "--log-level", "warning",
                   *_sets(f"model.name_or_path={ctx['base']}", *s["sets"])]
    if name == "prepare":
        return ["prepare", *common_args, "--dataset", str(ctx["synthetic"]), "--output", str(run / "data_full"),
                "--show", "0"]
    if name.endswith("_rm"):
        n = s["rm_steps"]
        return ["train-rm", "--dimension", name[:-3], *common_args, "--data-dir", str(run / "data"),
                *_sets(f"reward.max_steps={n}", f"reward.eval_steps={n}", f"reward.save_steps={n}",
                       "reward.logging_steps=1")]
    if name == "dpo":
        n = s["dpo_steps"]
        return ["train-dpo", *common_args, "--data-dir", str(run / "data"),
                *_sets(f"dpo.max_steps={n}", f"dpo.eval_steps={n}", f"dpo.save_steps={n}", "dpo.logging_steps=1",
                       f"dpo.merge_lora_on_export={'true' if ctx['merge_export'] else 'false'}")]
    if name == "generation":
        return ["evaluate", "safety", *common_args, "--model", f"aligned={run / 'models' / 'aligned'}",
                "--output", str(run / "results"),
                *_sets(f"eval.safety_prompts={ctx['eval_prompts']}", f"eval.max_safety_prompts={s['gen_prompts']}",
                       "eval.helpfulness=false", "eval.backend=hf", "eval.judge=cost-model",
                       "eval.mt_bench_questions=null")]
    raise ValueError(name)


def subset_split(run: Path, sizes: dict) -> dict:
    """The first records of each prepared split (the stages' bounded data; the full split sets the projection)."""
    out = {}
    for split, n in (("train", sizes["subset_train"]), ("val", sizes["subset_val"]), ("test", sizes["subset_val"])):
        lines = (run / "data_full" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        (run / "data").mkdir(parents=True, exist_ok=True)
        (run / "data" / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        out[split] = len(lines)
    return out


def setup(ctx: dict) -> dict:
    """The random base model and the synthetic files (a stage of its own, so its GPU memory is freed)."""
    from safealign.models.loading import load_tokenizer

    tok = load_tokenizer(ctx["tokenizer"])
    t0 = time.perf_counter()
    model = data.build_model(Path(ctx["base"]), tok, tiny=ctx["tiny"])
    t1 = time.perf_counter()
    rows = data.write_jsonl(Path(ctx["synthetic"]), data.synthetic_rows(ctx["sizes"]["full_pairs"], tok))
    data.write_jsonl(Path(ctx["eval_prompts"]), data.eval_prompts(ctx["sizes"]["gen_prompts"], tok))
    return {"model": model, "model_s": round(t1 - t0, 2), "rows": rows, "data_s": round(time.perf_counter() - t1, 2)}


def run_stage(name: str, argv: list[str], ctx: dict, timeout: float) -> dict:
    """One stage: in a child process under the probe (GPU, or --isolate), else in this process."""
    if not ctx["isolate"]:
        return Probe(name).run(argv)
    record = Path(ctx["work"]) / f"{name}.json"
    cmd = [sys.executable, str(HERE / "dryrun_probe.py"), str(record), "--", *argv]
    t0 = time.perf_counter()
    with open(Path(ctx["out"]) / "stages.log", "a") as fh:  # one log for all stages: $OUT returns few files
        fh.write(f"\n===== {name}: {' '.join(argv)}\n")
        fh.flush()
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO).returncode
        except subprocess.TimeoutExpired:
            return {"stage": name, "rc": "timeout", "wall_s": round(time.perf_counter() - t0, 1), "argv": argv}
    rec = json.loads(record.read_text()) if record.is_file() else {"stage": name, "rc": rc, "argv": argv}
    rec["process_wall_s"] = round(time.perf_counter() - t0, 1)  # interpreter start and imports included
    return rec


def child_setup(ctx_file: str) -> int:
    ctx = json.loads(Path(ctx_file).read_text())
    Path(ctx_file + ".setup.json").write_text(json.dumps(setup(ctx)))
    return 0


def place_base(work: Path, tiny: bool) -> tuple[Path, bool, dict]:
    """Where the base model goes, and whether the policy is exported merged, so four 7 B folders fit the disk:
    base + two merged judges + the merged policy need ~58 GiB; with less room the base goes to /dev/shm
    (RAM), and failing that the policy is exported as its LoRA adapter (the export is then not measured)."""
    need = 4 * MODEL_GIB + 3
    free = {"work_gib": round(shutil.disk_usage(work).free / GIB, 1)}
    shm = Path("/dev/shm")
    if shm.is_dir():
        free["shm_gib"] = round(shutil.disk_usage(shm).free / GIB, 1)
    if tiny or free["work_gib"] >= need:
        return work / "base", True, free
    if free.get("shm_gib", 0) >= MODEL_GIB + 2 and free["work_gib"] >= need - MODEL_GIB:
        return shm / "safealign_dryrun_base", True, free
    return work / "base", False, free


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="the real Mistral-7B-v0.1 tokenizer folder")
    ap.add_argument("--out", required=True, help="results folder (JSON, Markdown, stage logs)")
    ap.add_argument("--work", help="run folder (default: <out>/../dryrun_work or a temporary folder)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random Mistral on the CPU: the same path, small")
    ap.add_argument("--budget-s", type=float, default=540, help="stop starting stages after this many seconds")
    ap.add_argument("--isolate", action="store_true",
                    help="each stage in its own process (always on a GPU; with --tiny, to check that path)")
    ap.add_argument("--child-setup", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_setup:
        return child_setup(args.child_setup)
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(f"/tmp/safealign_dryrun_{int(time.time())}")
    work.mkdir(parents=True, exist_ok=True)
    mode = "tiny" if args.tiny else "gpu"
    base, merge, disk = place_base(work, args.tiny)
    ctx = {"tiny": args.tiny, "isolate": args.isolate or not args.tiny, "sizes": SIZES[mode],
           "tokenizer": str(Path(args.tokenizer).resolve()), "out": out, "work": work, "run": work / "run",
           "base": str(base), "merge_export": merge,
           "synthetic": str(work / "synthetic" / "pku_2024_synthetic.jsonl"),
           "eval_prompts": str(work / "synthetic" / "eval_prompts.jsonl")}
    result = {"mode": mode, "recipe": str(RECIPE.relative_to(REPO)), "machine": common.machine_info(),
              "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "sizes": SIZES[mode],
              "disk": disk, "base_model_dir": str(base), "policy_export": "merged" if merge else "LoRA adapter",
              "stages": {}}

    def save() -> None:
        result["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        result["projection"] = report.project(result, ctx, RECIPE)
        (out / "gpu_recipe_dryrun.json").write_text(json.dumps(result, indent=1, default=str))
        (out / "gpu_recipe_dryrun.md").write_text(report.markdown(result))

    if not ctx["isolate"]:
        result["stages"]["setup"] = setup(ctx)
    else:
        ctx_file = work / "ctx.json"
        ctx_file.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in ctx.items()}))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--tokenizer", args.tokenizer, "--out", str(out),
                        "--child-setup", str(ctx_file)], check=True, cwd=REPO)
        result["stages"]["setup"] = {**json.loads(Path(str(ctx_file) + ".setup.json").read_text()),
                                     "process_wall_s": round(time.perf_counter() - t0, 1)}
    save()
    for name in ("prepare", "helpful_rm", "harmless_rm", "dpo", "generation"):
        left = args.budget_s - (time.perf_counter() - t_start)
        if left < 20:
            result["stages"][name] = {"stage": name, "rc": "skipped: time budget spent"}
            save()
            continue
        if name == "generation" and not args.tiny:  # the helpful judge is not needed any more: free the disk
            shutil.rmtree(ctx["run"] / "models" / "helpful_rm", ignore_errors=True)
        rec = run_stage(name, stage_argv(name, ctx), ctx, timeout=left)
        if name == "prepare" and rec.get("rc") == 0:
            rec["subset"] = subset_split(ctx["run"], ctx["sizes"])
        if name == "generation" and rec.get("rc") == 0:
            safety = json.loads((ctx["run"] / "results" / "aligned" / "safety.json").read_text())
            rec["generation"] = safety["generation"]
            rec["generation_params"] = safety["generation_params"]
        result["stages"][name] = rec
        save()
        print(f"[dryrun] {name}: rc={rec.get('rc')} wall={rec.get('process_wall_s', rec.get('wall_s'))} s", flush=True)
    if str(base).startswith("/dev/shm"):
        shutil.rmtree(base, ignore_errors=True)
    failed = [n for n, r in result["stages"].items() if n != "setup" and r.get("rc") != 0]
    print((out / "gpu_recipe_dryrun.md").read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
