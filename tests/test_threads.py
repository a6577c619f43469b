"""`run.num_threads`: the default follows the cores this process may use (or OMP_NUM_THREADS), and
`apply_num_threads` sizes torch's pools here and the runtimes of every child process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safealign.errors import ConfigError
from safealign.threads import (THREAD_ENV_VARS, _cgroup_cpu_limit, apply_num_threads, available_cores,
                               default_num_threads, resolve_num_threads, threads_for_this_process)

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def restore_threads(monkeypatch):
    """Every thread variable and torch's pool are put back after the test (other tests assume 1 thread)."""
    import torch

    for var in (*THREAD_ENV_VARS, "TOKENIZERS_PARALLELISM"):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _child(code: str, env: dict | None = None) -> str:
    full = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip()


def test_default_honours_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_num_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_num_threads() == available_cores() >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    with pytest.raises(ConfigError, match=r"OMP_NUM_THREADS='zero': must be a whole number >= 1"):
        default_num_threads()


def test_default_follows_the_affinity_mask_of_the_process():
    # A child pinned to one core (as `taskset -c 0` would) must default to 1 thread, not to the machine's count.
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from safealign.threads import default_num_threads; print(default_num_threads())")
    env = {k: "" for k in ("OMP_NUM_THREADS",)}
    assert _child(code, env) == "1"


def test_cgroup_quota_caps_the_cores(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_limit(tmp_path) == 2  # 1.5 CPUs -> 2 threads
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_limit(tmp_path) is None
    assert _cgroup_cpu_limit(tmp_path / "absent") is None


def test_configured_value_is_validated():
    assert resolve_num_threads(2) == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="run.num_threads: must be a whole number >= 1"):
            resolve_num_threads(bad)


def test_ranks_of_a_launcher_share_the_cores(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads_for_this_process(4) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun / accelerate launch with 2 processes on this machine
    assert threads_for_this_process(4) == 2 and threads_for_this_process(1) == 1 and threads_for_this_process(5) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert threads_for_this_process(None) == 4


def test_apply_sets_torch_and_the_environment(restore_threads):
    import torch

    assert apply_num_threads(2) == 2
    assert torch.get_num_threads() == 2
    assert all(os.environ[v] == "2" for v in THREAD_ENV_VARS)
    apply_num_threads(1)
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"


def test_a_child_process_inherits_the_setting(restore_threads):
    # The suite runs with OMP_NUM_THREADS=1: a child seeing 2 proves the setting travelled, not the default.
    apply_num_threads(2)
    code = "import os, torch; print(torch.get_num_threads(), os.environ['OPENBLAS_NUM_THREADS'])"
    assert _child(code).split() == ["2", "2"]
    apply_num_threads(1)
    assert _child(code).split() == ["1", "1"]


def test_tokenizers_parallelism_is_left_to_the_user(restore_threads, monkeypatch):
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    apply_num_threads(1)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    apply_num_threads(1)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
