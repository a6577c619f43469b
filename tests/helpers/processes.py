"""`safealign` in a child process, killed with SIGKILL at a chosen moment: what a crash leaves behind is what
the resume tests resume from."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


def kill_when(args: list, ready: Callable[[], bool], timeout: float, poll: float = 0.1,
              settle: float = 0.0) -> bool:
    """Start `safealign <args>` and SIGKILL it once `ready()` is true (after `settle` more seconds).

    Returns True when it was killed, False when it ended (or `timeout` passed) first."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "safealign.cli", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if ready():
                time.sleep(settle)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(poll)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
