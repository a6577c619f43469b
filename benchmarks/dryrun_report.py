"""The GPU dry run's figures: what each stage measured, and the full recipe's wall time projected from them.

Measured per stage (dryrun_probe.py records): training tokens/s = non-pad tokens of the timed micro-batches /
their seconds, the first micro-batch left out (kernel selection, allocator warm-up); optimizer-step time =
median of the steps after the first; evaluation pairs/s; the precompute pass's forward tokens/s (reference
and judges); generation tokens/s (new tokens / generation seconds, from the evaluation's safety.json); peak
memory; and the stage's fixed cost = its wall time minus all of the above (model loading, LoRA merge and
export, checkpoints, start-up), which does not grow with the data.

Projection (one GPU): the recipe's data = the prepared full-size split (train / val records) times the mean
tokens of a record (both sequences, the recipe's max_length and max_prompt_length, measured on up to 2000
prepared records with the real tokenizer); its epochs, batch sizes and eval_steps from the recipe file; the
evaluation = 700 BeaverTails-Evaluation prompts for the base and the aligned model at the measured new tokens per
answer (a random model seldom stops early: an upper bound). 8 GPUs: the compute divided by 8 (ideal data
parallelism; LoRA's gradients are 42 M parameters, their all-reduce is small next to a step), fixed costs not
divided. Not measured: multi-GPU scaling, vLLM, MT-Bench judging (API-bound), the helpfulness pass.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

EVAL_PROMPTS = 700  # BeaverTails-Evaluation
SAMPLE = 2000


def _sum(xs) -> float:
    return float(sum(xs))


def measured(rec: dict) -> dict:
    """The rates of one stage record (None where the stage did not do that kind of work)."""
    ms = rec.get("micro_steps") or []
    timed = ms[1:] if len(ms) > 1 else ms
    steps = rec.get("steps") or []
    evals = [e for e in rec.get("evals") or [] if e.get("examples")]
    calls = rec.get("calls") or []

    def by(kind):
        return [c for c in calls if c["kind"] == kind]

    def tok_rate(items):
        s = _sum(c["s"] for c in items)
        return _sum(c["tokens"] for c in items) / s if items and s > 0 else None

    compute = _sum(m["s"] for m in ms) + _sum(e["s"] for e in rec.get("evals") or []) + _sum(
        c["s"] for c in by("reference_logps") + by("score_pairs"))
    gen = rec.get("generation") or {}
    out = {
        "micro_steps": len(ms), "optimizer_steps": len(steps),
        "train_tokens_per_s": tok_rate(timed),
        "padding_fraction": (1 - _sum(m["tokens"] for m in ms) / _sum(m["padded_tokens"] for m in ms)) if ms else None,
        "step_s_median": statistics.median(steps[1:] or steps) if steps else None,
        "eval_pairs_per_s": _sum(e["examples"] for e in evals) / _sum(e["s"] for e in evals) if evals else None,
        "reference_tokens_per_s": tok_rate(by("reference_logps")), "score_tokens_per_s": tok_rate(by("score_pairs")),
        "load_s": _sum(c["s"] for c in by("load")), "save_s": _sum(c["s"] for c in by("save")),
        "generation_tokens_per_s": gen.get("tokens_per_second"), "generation_s": gen.get("seconds"),
        "new_tokens_per_answer": gen["new_tokens"] / gen["num_generated"] if gen.get("num_generated") else None,
        "memory": rec.get("memory"), "train_memory": rec.get("train_memory"),
    }
    wall = rec.get("wall_s")
    out["fixed_s"] = (wall - compute - (gen.get("seconds") or 0)) if wall is not None else None
    return out


def full_data(ctx: dict, recipe) -> dict | None:
    """Records of the prepared full-size split and mean tokens per record (cached in ctx)."""
    if "full_data" in ctx:
        return ctx["full_data"]
    stats = Path(ctx["run"]) / "data_full" / "stats.json"
    if not stats.is_file():
        return None
    from safealign.chat import encode_pair
    from safealign.models.loading import load_tokenizer

    splits = json.loads(stats.read_text())["splits"]
    tok = load_tokenizer(ctx["tokenizer"])
    d = recipe.section("dpo")
    lines = (Path(ctx["run"]) / "data_full" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:SAMPLE]
    recs = [json.loads(x) for x in lines]
    tokens = [sum(len(encode_pair(tok, r["prompt"], r[f"response_{i}"], d.max_length, d.max_prompt_length)
                      ["input_ids"]) for i in (0, 1)) for r in recs]
    ctx["full_data"] = {"train": splits["train"]["preference"]["records"],
                        "val": splits["val"]["preference"]["records"], "tokens_per_record": statistics.mean(tokens),
                        "tokens_sampled_records": len(recs)}
    return ctx["full_data"]


def project(result: dict, ctx: dict, recipe_path) -> dict:
    from safealign.config import load_config

    recipe = load_config(recipe_path)
    full = full_data(ctx, recipe)
    if full is None:
        return {}
    n, nv, T = full["train"], full["val"], full["tokens_per_record"]
    st = {k: measured(v) for k, v in result["stages"].items() if isinstance(v, dict) and v.get("rc") == 0}
    rows = {}
    prep = result["stages"].get("prepare", {})
    if prep.get("rc") == 0:
        rows["prepare"] = {"compute_s": 0.0, "fixed_s": prep.get("wall_s", 0.0)}
    r, d = recipe.section("reward"), recipe.section("dpo")
    for dim in ("helpful_rm", "harmless_rm"):
        m = st.get(dim)
        if m and m["train_tokens_per_s"] and m["eval_pairs_per_s"]:
            steps = math.ceil(n / (r.per_device_train_batch_size * r.gradient_accumulation_steps)) * r.num_train_epochs
            evals = steps // int(r.eval_steps) + 1
            rows[dim] = {"compute_s": r.num_train_epochs * n * T / m["train_tokens_per_s"]
                         + evals * nv / m["eval_pairs_per_s"], "fixed_s": m["fixed_s"], "optimizer_steps": steps,
                         "evaluations": evals}
    m = st.get("dpo")
    if m and m["reference_tokens_per_s"] and m["score_tokens_per_s"]:
        tokens = (n + nv) * T
        rows["precompute"] = {"compute_s": tokens / m["reference_tokens_per_s"] + 2 * tokens / m["score_tokens_per_s"],
                              "fixed_s": 0.0}
    if m and m["train_tokens_per_s"] and m["eval_pairs_per_s"]:
        steps = math.ceil(n / (d.per_device_train_batch_size * d.gradient_accumulation_steps)) * d.num_train_epochs
        evals = steps // int(d.eval_steps) + 1
        rows["dpo"] = {"compute_s": d.num_train_epochs * n * T / m["train_tokens_per_s"]
                       + evals * nv / m["eval_pairs_per_s"], "fixed_s": m["fixed_s"], "optimizer_steps": steps,
                       "evaluations": evals}
    g = st.get("generation")
    if g and g["generation_tokens_per_s"]:
        rows["generation"] = {"compute_s": 2 * EVAL_PROMPTS * g["new_tokens_per_answer"] / g["generation_tokens_per_s"],
                              "fixed_s": g["fixed_s"], "answers": 2 * EVAL_PROMPTS}
    for row in rows.values():
        row["one_gpu_s"] = row["compute_s"] + (row["fixed_s"] or 0)
        row["eight_gpus_s"] = row["compute_s"] / 8 + (row["fixed_s"] or 0)
    complete = all(k in rows for k in ("prepare", "helpful_rm", "harmless_rm", "precompute", "dpo", "generation"))
    return {"full_data": full, "stages": rows, "complete": complete,
            "total_one_gpu_h": sum(x["one_gpu_s"] for x in rows.values()) / 3600,
            "total_eight_gpus_h": sum(x["eight_gpus_s"] for x in rows.values()) / 3600}


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# GPU dry run of `{result['recipe']}` ({result['mode']})", "",
             f"{result['date_utc']}; {m.get('gpu', 'CPU: ' + str(m.get('cpu')))}; torch {m.get('torch')}, "
             f"transformers {m.get('transformers', '?')}; elapsed {result.get('elapsed_s')} s; policy export: "
             f"{result['policy_export']}; base model in `{result['base_model_dir']}`.", ""]
    setup = result["stages"].get("setup") or {}
    if setup.get("model"):
        mo = setup["model"]
        size = f"{mo['params'] / 1e9:.2f} B" if mo["params"] >= 1e9 else f"{mo['params'] / 1e6:.1f} M"
        lines += [f"Random base: {size} parameters ({mo['layers']} layers, hidden {mo['hidden']}, "
                  f"vocabulary {mo['vocab']}, {mo['dtype']}), built in {mo['build_s']} s, saved in {mo['save_s']} s; "
                  f"{setup['rows']} synthetic PKU 2024 rows in {setup['data_s']} s.", ""]
    lines += ["| stage | rc | wall s | step s (median) | train tok/s | eval pairs/s | precompute tok/s (ref / judge) "
              "| generation tok/s | peak GiB (train / stage) | fixed s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rec in result["stages"].items():
        if name == "setup":
            continue
        x = measured(rec) if rec.get("rc") == 0 else {}
        mem, tmem = x.get("memory") or {}, x.get("train_memory") or {}
        key = "peak_allocated_gib" if mem.get("kind") == "cuda_max_allocated" else "peak_rss_gib"
        lines.append(f"| {name} | {rec.get('rc')} | {_f(rec.get('process_wall_s', rec.get('wall_s')), '{:.1f}')} | "
                     f"{_f(x.get('step_s_median'), '{:.3f}')} | {_f(x.get('train_tokens_per_s'), '{:.0f}')} | "
                     f"{_f(x.get('eval_pairs_per_s'), '{:.1f}')} | {_f(x.get('reference_tokens_per_s'), '{:.0f}')} / "
                     f"{_f(x.get('score_tokens_per_s'), '{:.0f}')} | "
                     f"{_f(x.get('generation_tokens_per_s'), '{:.0f}')} | "
                     f"{_f(tmem.get(key))} / {_f(mem.get(key))} | {_f(x.get('fixed_s'), '{:.1f}')} |")
    p = result.get("projection") or {}
    if p.get("stages"):
        fd = p["full_data"]
        lines += ["", f"## Projected full recipe ({fd['train']} train / {fd['val']} val records, "
                  f"{fd['tokens_per_record']:.0f} tokens a record)" + ("" if p["complete"] else " — INCOMPLETE"), "",
                  "| stage | compute s (1 GPU) | fixed s | 1 GPU h | 8 GPUs h |", "|---|---|---|---|---|"]
        for name, row in p["stages"].items():
            lines.append(f"| {name} | {row['compute_s']:.0f} | {_f(row['fixed_s'], '{:.0f}')} | "
                         f"{row['one_gpu_s'] / 3600:.2f} | {row['eight_gpus_s'] / 3600:.2f} |")
        lines.append(f"| **total** | | | **{p['total_one_gpu_h']:.2f}** | **{p['total_eight_gpus_h']:.2f}** |")
        lines += ["", "8 GPUs: ideal data parallelism of the compute, fixed costs unchanged (not measured)."]
    if result["mode"] == "tiny":
        lines += ["", "Tiny mode: a 2-layer random Mistral on the CPU with shortened batches; it proves the path, "
                  "its figures project nothing."]
    return "\n".join(lines) + "\n"
