"""Two-process data parallel on CPU (torchrun, gloo) matches one process with the same global batch:
same per-step losses, same λ trajectory, same final weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.dpo import make_cfg, make_run, write_cfg

WORKER = '''
import json, os, sys
import torch
from safealign.config import load_config
from safealign.dpo.train import run_train_dpo

cfg = load_config(sys.argv[1])
summary = run_train_dpo(cfg)
world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
assert world == int(os.environ.get("WORLD_SIZE", "1")), (world, os.environ.get("WORLD_SIZE"))
rank = int(os.environ.get("RANK", "0"))
with open(sys.argv[2] if rank == 0 else sys.argv[2] + f".rank{rank}", "w") as fh:
    json.dump({"world_size": world, "args_world_size": summary["world_size"],
               "lambda": summary["lambda_trajectory"]}, fh)
'''
SETTINGS = dict(max_steps=5, save_strategy="no", eval_strategy="no", constraint="cost", cost_threshold=-20.0,
                lambda_lr=0.05, learning_rate=2e-3)


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path, tiny_base):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    judges = tmp_path / "judges"
    make_run(judges, tiny_base, n_train=40)
    results = {}
    for name, per_device, launcher, extra in (
            ("single", 8, [sys.executable], {}),
            ("ddp", 4, [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
             {"ddp_backend": "gloo"})):
        make_run(tmp_path / name, tiny_base, n_train=40, rm_root=judges)
        cfg = write_cfg(tmp_path / f"{name}.yaml", make_cfg(tmp_path / name, tiny_base, judges,
                                                            per_device_train_batch_size=per_device, **SETTINGS, **extra))
        out = tmp_path / f"{name}.json"
        proc = subprocess.run(launcher + [str(worker), str(cfg), str(out)], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        results[name] = json.loads(out.read_text())
        results[name]["state"] = json.loads((tmp_path / name / "models" / "aligned" / "train_summary.json").read_text())
    assert results["ddp"]["world_size"] == 2 and results["ddp"]["args_world_size"] == 2
    assert results["single"]["world_size"] == 1
    rank1 = json.loads((tmp_path / "ddp.json.rank1").read_text())
    assert rank1["lambda"] == results["ddp"]["lambda"]  # λ identical on every rank (J_C all-reduced)
    lam_s, lam_d = results["single"]["lambda"], results["ddp"]["lambda"]
    assert len(lam_s) == len(lam_d) == 5
    for a, b in zip(lam_s, lam_d):
        assert b[1] == pytest.approx(a[1], rel=1e-4) and b[2] == pytest.approx(a[2], rel=1e-4)
    last_s, last_d = results["single"]["state"]["last_train_log"], results["ddp"]["state"]["last_train_log"]
    for key in ("loss_total", "loss_helpful", "loss_safety", "accuracy_safety", "lambda"):
        assert last_d[key] == pytest.approx(last_s[key], rel=1e-4, abs=1e-5), key

    from safetensors.torch import load_file

    ws = load_file(str(tmp_path / "single" / "models" / "aligned" / "model.safetensors"))
    wd = load_file(str(tmp_path / "ddp" / "models" / "aligned" / "model.safetensors"))
    assert ws.keys() == wd.keys()
    for k in ws:
        assert (ws[k] - wd[k]).abs().max().item() < 1e-4, k
