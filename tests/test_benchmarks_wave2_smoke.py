"""Smoke tests of the issue-16 benchmarks at their smallest sizes: they run and report consistent figures.

No timing assertions (the figures are for real runs, docs/benchmarks.md, "Wave 2"); the assertions are on what
must hold whatever the machine: the same loss for both log-prob methods, packed rows with less padding, the
trainers' step figures present.
"""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))


def test_bench_logps_quick():
    import bench_logps

    a = bench_logps.parse_args(["--quick", "--rows", "2", "--positions", "8", "--vocab", "300", "--hidden", "16",
                                "--reps", "1"])
    res = bench_logps.run(a)
    runs = res["runs"]
    assert set(runs) == {f"{m}:{d}" for m in bench_logps.METHODS for d in bench_logps.DTYPES}
    for dtype in bench_logps.DTYPES:
        assert abs(runs[f"chunked:{dtype}"]["loss"] - runs[f"reference:{dtype}"]["loss"]) < 1e-3
    assert "memory ratio" in res["markdown"]


def test_bench_packing_quick():
    import bench_packing

    res = bench_packing.run(bench_packing.parse_args(["--quick", "--pairs", "4", "--batches", "1"]))
    lay = res["layout"]
    assert 0 < lay["padding_fraction"] < 1 and lay["packed_row_tokens"] < lay["padded_tokens"]
    assert set(res["results"]) == set(bench_packing.METHODS)
    assert all(r["tokens_per_cpu_s"] > 0 for r in res["results"].values())


def test_bench_gpu_trainer_tiny_on_cpu(tmp_path):
    import json

    import bench_gpu_trainer

    out = tmp_path / "t.json"
    assert bench_gpu_trainer.main(["--tiny", "--steps", "1", "--warmup", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for name in bench_gpu_trainer.CONFIGS:
        assert res["configs"][name].get("tokens_per_s", 0) > 0, res["configs"][name]
    assert set(res["vs_trl_tokens_per_s"]) == set(bench_gpu_trainer.CONFIGS) - {"trl_precompute"}
    assert res["configs"]["safealign_nockpt"]["activation_checkpointing"] is False
    assert res["configs"]["safealign"]["activation_checkpointing"] is True
    prof = res["configs"]["safealign"]["profile"]  # the extra profiled step: kernel time by category
    assert prof["top"] and abs(sum(prof["by_category_share"].values()) - 1) < 0.01
