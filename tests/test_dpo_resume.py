"""Exact resume: `safealign train-dpo` killed with SIGKILL after a checkpoint and resumed with --resume ends
with the same λ trajectory and per-step losses as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.dpo import make_cfg, make_run, write_cfg

SAFEALIGN = [sys.executable, "-m", "safealign.cli"]
SETTINGS = dict(num_train_epochs=3, save_steps=4, constraint="cost", cost_threshold=-20.0, lambda_lr=0.05,
                lambda_update_steps=3, learning_rate=2e-3, warmup_steps=2)


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0",
                PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))


def _train(cfg_path: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen(SAFEALIGN + ["train-dpo", "--config", str(cfg_path), *extra], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _final_state(run_dir: Path) -> tuple[list, dict]:
    summary = json.loads((run_dir / "models" / "aligned" / "train_summary.json").read_text())
    ckpts = sorted((run_dir / "checkpoints" / "dpo").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((ckpts[-1] / "trainer_state.json").read_text())["log_history"]
    losses = {h["step"]: h["loss_total"] for h in history if "loss_total" in h}
    return summary["lambda_trajectory"], losses


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted(tmp_path, tiny_base):
    judges = tmp_path / "judges"
    make_run(judges, tiny_base, n_train=40)
    cfgs = {}
    for name in ("full", "killed"):
        make_run(tmp_path / name, tiny_base, n_train=40, rm_root=judges)
        cfgs[name] = write_cfg(tmp_path / f"{name}.yaml", make_cfg(tmp_path / name, tiny_base, judges, **SETTINGS))

    full = _train(cfgs["full"])
    killed = _train(cfgs["killed"])
    ckpt_dir = tmp_path / "killed" / "checkpoints" / "dpo"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt_dir / "checkpoint-4" / "safealign_state.json").is_file():
        assert killed.poll() is None, killed.stdout.read()
        time.sleep(0.02)
    assert killed.poll() is None, "training finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "models" / "aligned").exists()  # nothing exported by the killed run

    out, _ = full.communicate(timeout=300)
    assert full.returncode == 0, out
    resumed = _train(cfgs["killed"], "--resume")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    # the stage's log file says so (the terminal keeps warnings and progress bars only)
    assert "resuming from" in (tmp_path / "killed" / "logs" / "dpo.log").read_text()

    lam_full, loss_full = _final_state(tmp_path / "full")
    lam_res, loss_res = _final_state(tmp_path / "killed")
    assert len(lam_full) == 10 and max(h[1] for h in lam_full) > 1.0  # 30 steps, an update every 3, λ moved
    assert [h[0] for h in lam_res] == [h[0] for h in lam_full]
    for a, b in zip(lam_full, lam_res):
        assert b[1] == pytest.approx(a[1], rel=1e-5, abs=1e-6) and b[2] == pytest.approx(a[2], rel=1e-4, abs=1e-5)
    assert sorted(loss_res) == sorted(loss_full) == list(range(1, 31))
    for step in loss_full:
        assert loss_res[step] == pytest.approx(loss_full[step], rel=1e-4, abs=1e-5), step
