"""One thread setting for the whole project (`run.num_threads`), applied in every stage and inherited by every
subprocess.

Why: torch's intra-op pool, its inter-op pool and the BLAS/OpenMP pools each size themselves to every core of
the machine. Two jobs on one small machine (or one job next to a tokenizer's Rayon pool) then run 2-4x more
threads than cores, and OpenMP threads spin while they wait: the issue measured two demos at once taking
5.4x the wall time and 3.3x the CPU time of one. The default here is the number of cores this process may
actually use (its CPU affinity and its cgroup quota), or `OMP_NUM_THREADS` when the user set it.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger(__name__)

# Read at start-up by the OpenMP runtime, MKL, OpenBLAS, Apple Accelerate, numexpr and Rayon (tokenizers):
# setting them here sizes the pools of every process started from now on.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS")


def _positive_int(value: str, name: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{name}={value!r}: must be a whole number >= 1 (unset it to use every available core)")
    return n


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Cores allowed by a cgroup v2 CPU quota (`cpu.max` = "<quota> <period>"), None when unlimited/absent.

    A container limited to 2 CPUs on a 64-core host still sees 64 cores in its affinity mask; the quota is
    what it may really use."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows have no affinity call
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)


def default_num_threads() -> int:
    """`OMP_NUM_THREADS` when set (the user's choice wins), else the cores this process may use."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env is not None and env.strip():
        return _positive_int(env, "OMP_NUM_THREADS")
    return available_cores()


def resolve_num_threads(configured: int | None) -> int:
    """`run.num_threads` if set (validated), else `default_num_threads()`."""
    if configured is None:
        return default_num_threads()
    if isinstance(configured, bool) or not isinstance(configured, int) or configured < 1:
        raise ConfigError(f"run.num_threads: must be a whole number >= 1 or null (got {configured!r})")
    return configured


def threads_for_this_process(configured: int | None) -> int:
    """`resolve_num_threads(configured)` shared among the processes a launcher started on this machine:
    torchrun and accelerate set LOCAL_WORLD_SIZE, and N ranks that each took every core would oversubscribe
    them N times. Each rank gets n // N threads (at least 1)."""
    n = resolve_num_threads(configured)
    local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    if local.isdigit() and int(local) > 1:
        n = max(1, n // int(local))
    return n


def apply_num_threads(n: int | None = None) -> int:
    """Size every thread pool of this process and of its future children to `n` (default: see above).

    In this process: torch's intra-op pool (`torch.set_num_threads`, which also sizes OpenMP and MKL) and,
    when still possible, its inter-op pool. For children: the environment variables each runtime reads at
    start-up (`THREAD_ENV_VARS`). Tokenizers' Rayon pool is turned off for n == 1 and sized to n otherwise,
    unless the user set TOKENIZERS_PARALLELISM. Returns n.
    """
    n = resolve_num_threads(n)
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:
            # Allowed only once, before the first inter-op work: a second stage in the same process keeps the
            # first size. Harmless (inter-op parallelism is rare on these models); said in the log only.
            log.debug("torch inter-op threads stay at %d (already in use)", torch.get_num_interop_threads())
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false" if n == 1 else "true")
    log.debug(describe())
    return n


def describe() -> str:
    """The thread settings in force, for the stage's log file."""
    import torch

    return (f"threads: {os.environ.get('OMP_NUM_THREADS', '?')} (torch intra-op {torch.get_num_threads()}, "
            f"inter-op {torch.get_num_interop_threads()})")
