"""benchmarks/gpu_recipe_dryrun.sh --tiny: the GPU dry run's whole path (the recipe file through the real CLI
stages under the probes, the synthetic PKU-sized data, the projection) on a tiny random Mistral on the CPU,
with the real Mistral tokenizer. Skipped without it. About 30 s on 2 cores."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
from helpers.real import REPO, mistral_tokenizer_folder

from safealign.models.loading import load_tokenizer

BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

import dryrun_data  # noqa: E402
from dryrun_report import measured  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer_dir():
    return mistral_tokenizer_folder()


def test_synthetic_rows_follow_the_real_lengths(tokenizer_dir):
    tok = load_tokenizer(str(tokenizer_dir))
    lengths = json.loads(dryrun_data.LENGTHS.read_text())
    maker = dryrun_data.TextMaker(tok)
    for n in (3, 14, 85, 311):  # a text of n tokens tokenizes to n, give or take a merge across words
        assert abs(len(tok(maker.text(n), add_special_tokens=False)["input_ids"]) - n) <= max(1, n // 50)
    rows = list(dryrun_data.synthetic_rows(300, tok))
    resp = [len(tok(r[f"response_{i}"], add_special_tokens=False)["input_ids"]) for r in rows for i in (0, 1)]
    real = statistics.mean(lengths["response_tokens"])
    assert abs(statistics.mean(resp) - real) < 0.15 * real
    assert all(len(r["response_0_harm_category"]) == 19 for r in rows)
    assert all((r["response_0_severity_level"] > 0) == (not r["is_response_0_safe"]) for r in rows)


@pytest.mark.slow
def test_tiny_dry_run_end_to_end(tokenizer_dir, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(["bash", str(BENCH / "gpu_recipe_dryrun.sh"), "--tiny", "--tokenizer", str(tokenizer_dir),
                           "--out", str(out), "--work", str(work)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "gpu_recipe_dryrun.json").read_text())
    stages = res["stages"]
    assert {n: r.get("rc") for n, r in stages.items() if n != "setup"} == {
        "prepare": 0, "helpful_rm": 0, "harmless_rm": 0, "dpo": 0, "generation": 0}
    assert stages["setup"]["rows"] == 300 and stages["setup"]["model"]["vocab"] == 32000
    # the synthetic rows pass prepare as real PKU 2024 rows: integrity hashes included
    full = json.loads((work / "run" / "data_full" / "stats.json").read_text())
    assert full["rows_kept"] == 300 and full["dropped"] == {} and full["schemas"] == {"pku2024": 300}
    for name in ("helpful_rm", "harmless_rm", "dpo"):
        m = measured(stages[name])
        assert m["optimizer_steps"] == res["sizes"]["rm_steps" if name != "dpo" else "dpo_steps"]
        assert m["train_tokens_per_s"] > 0 and m["eval_pairs_per_s"] > 0 and m["step_s_median"] > 0
        assert all(s["tokens"] <= s["padded_tokens"] for s in stages[name]["micro_steps"])
    assert len(stages["dpo"]["micro_steps"]) == 2 * res["sizes"]["dpo_steps"]  # gradient accumulation 2
    kinds = {c["kind"] for c in stages["dpo"]["calls"]}
    assert {"reference_logps", "score_pairs", "load", "save"} <= kinds
    gen = stages["generation"]["generation"]
    assert gen["num_generated"] == res["sizes"]["gen_prompts"] and gen["new_tokens"] > 0
    proj = res["projection"]
    assert proj["complete"] and proj["full_data"]["train"] == full["splits"]["train"]["preference"]["records"]
    assert set(proj["stages"]) == {"prepare", "helpful_rm", "harmless_rm", "precompute", "dpo", "generation"}
    assert 0 < proj["total_eight_gpus_h"] < proj["total_one_gpu_h"]
    md = (out / "gpu_recipe_dryrun.md").read_text()
    assert "## Projected full recipe" in md and "| dpo | 0 |" in md and "Tiny mode" in md
