"""Smoke tests of benchmarks/: every script runs at its smallest sizes and reports its figures.

No timing assertions: the targets are for the scripts' real runs (docs/benchmarks.md), not for tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

_ENV = dict(os.environ)
import common  # noqa: E402

# common.py sets TQDM_DISABLE and friends for the benchmark scripts; keep them out of this pytest process, whose
# other tests start CLI children with its environment (a child without progress bars failed test_stage_output).
os.environ.clear()
os.environ.update(_ENV)


def test_tokenizer_lengths_are_exact():
    tok = common.build_tokenizer(300)
    rec = common.synthetic_records(1, 7, 5, 300)[0]
    assert len(tok(rec["response_0"], add_special_tokens=False)["input_ids"]) == 5
    assert tok.unk_token_id not in tok.apply_chat_template([{"role": "user", "content": rec["prompt"]}],
                                                           tokenize=True, add_generation_prompt=True)
    lens = common.skewed_lengths(200, 64, median=16)
    assert min(lens) >= 8 and max(lens) <= 64


def test_summarize():
    s = common.summarize([3.0, 1.0, 2.0, 4.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 4.0 and s["n"] == 4


def test_precompute_and_generate_quick(capsys, tmp_path):
    import bench_generate
    import bench_precompute

    res = bench_precompute.run(bench_precompute.parse_args(["--quick"]))
    for name in ("reference", "scoring"):
        p = res["passes"][name]
        assert p["length_sorted"]["tokens_per_s"] > 0 and p["unsorted"]["tokens_per_s"] > 0
        assert p["max_abs_diff"] < 1e-3  # batching changes speed, not the numbers
    assert "speedup" in res["markdown"]
    assert bench_generate.main(["--quick", "--out", str(tmp_path / "g.json")]) == 0
    gen = json.loads((tmp_path / "g.json").read_text())
    assert gen["variants"]["hf_batched"]["samples_per_s"] > 0
    assert gen["variants"]["hf_one_at_a_time"]["new_tokens"] > 0
    assert "| hf_batched |" in capsys.readouterr().out  # the figures are printed


@pytest.mark.slow  # trains the policy a few steps per configuration, each in its own process
def test_train_step_quick(tmp_path):
    import bench_train_step

    out = tmp_path / "ts.json"
    assert bench_train_step.main(["--quick", "--configs", "safe_mm_dpo,trl_dpo_precompute", "--memory-breakdown",
                                  "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for c in ("safe_mm_dpo", "trl_dpo_precompute"):
        assert res["configs"][c]["step_s"]["median"] > 0
        assert res["configs"][c]["peak_mem_mb"] > 0
    assert any(r["ratio"] == "safe_mm_dpo / trl_dpo_precompute" for r in res["ratios"])
    assert "| safe_mm_dpo |" in res["markdown"]
    # the profiler's live-tensor peak: weights + activations saved for backward, both > 0
    for c in ("safe_mm_dpo", "trl_dpo_precompute"):
        live = res["configs"][c]
        assert live["live_peak_mb"] > 0
        assert live["live_by_category_mb"]["parameter"] > 0 and live["live_by_category_mb"]["activation"] > 0
        assert abs(sum(live["live_by_category_mb"].values()) - live["live_peak_mb"]) < 1e-6
    assert any(r["metric"] == "mem_live" for r in res["ratios"])
    assert "Live tensors at the peak" in res["markdown"]


def test_gpu_script_tiny_on_cpu_with_oom_search(tmp_path):
    out = tmp_path / "g.json"
    cmd = [sys.executable, str(BENCH / "bench_gpu_mistral.py"), "--tiny", "--out", str(out), "--pairs", "8",
           "--prompt-len", "8", "--response-len", "8", "--steps", "2", "--warmup", "1", "--max-pairs", "32",
           "--simulate-oom-above", "6"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["seed_batch"]["pairs"] == 4  # 8 "did not fit": halved
    assert res["seed_batch"]["tokens_per_s"] > 0
    assert res["max_pairs_fit"] == 6 and res["max_pairs_first_oom"] == 7
    assert res["online"]["pairs"] == 4 and res["online"]["tokens_per_s"] > 0
    assert {"mem_precompute_over_online", "time_precompute_over_online", "target", "met"} <= set(res["ratios"])
    assert res["memory_kind"].startswith("cpu_rss_peak")
    assert res["phases_done"] == ["seed_batch", "online", "max_batch"]


def _gpu_script_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu_mistral", BENCH / "bench_gpu_mistral.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_script_response_logits_match_all_logits():
    import copy

    import torch

    mod = _gpu_script_module()
    torch.manual_seed(0)
    model, _ = mod.build_policy(True, torch.device("cpu"), torch.float32, lora_r=4, checkpointing=False)
    with torch.no_grad():  # a non-zero adapter, so the reference (adapter off) differs from the policy
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    gen = torch.Generator().manual_seed(1)
    prompt_len, resp_len = 8, 6
    batch = mod.make_batch(3, prompt_len, resp_len, model.config.vocab_size, torch.device("cpu"), gen)
    ids = batch[0]
    with torch.no_grad():
        fast = mod.response_logps(model, ids, prompt_len)
        full = mod.response_logps(model, ids, prompt_len, all_logits=True)
        # by hand: log π of the response tokens only
        lp = model(input_ids=ids).logits.float().log_softmax(-1)[:, prompt_len - 1:-1]
        by_hand = lp.gather(-1, ids[:, prompt_len:].unsqueeze(-1)).squeeze(-1).sum(-1)
    assert fast.dtype == torch.float32 and fast.shape == (6,)
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast, by_hand, rtol=0, atol=1e-5)

    losses = []
    for all_logits in (False, True):
        m = copy.deepcopy(model)
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
        losses.append(mod.train_step(m, opt, batch, prompt_len, all_logits))
    assert abs(losses[0] - losses[1]) < 1e-5

    # online mode's inputs: reference = adapter off (differs from the policy), RM margins per pair
    rms = mod.build_reward_models(True, torch.device("cpu"), torch.float32)
    o_ids, _, ref, d_h, d_s = mod.online_inputs(model, rms, batch, prompt_len)
    assert o_ids is ids and ref.shape == (6,) and d_h.shape == (3,) and d_s.shape == (3,)
    assert not torch.allclose(ref, fast)
    with torch.no_grad(), model.disable_adapter():
        torch.testing.assert_close(ref, mod.response_logps(model, ids, prompt_len), rtol=0, atol=1e-5)
    assert not ref.requires_grad and not d_h.requires_grad


@pytest.mark.parametrize("only", ["generate"])
def test_run_all_writes_json_and_markdown(tmp_path, only):
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", only, "--out-dir",
                           str(tmp_path), "--machine", "smoke"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads((tmp_path / "smoke.json").read_text())
    assert rep["results"][only]["variants"]
    assert "## Generation" in (tmp_path / "smoke.md").read_text()
