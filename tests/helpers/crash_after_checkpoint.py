"""`safealign` that kills itself with SIGKILL right after its first Trainer checkpoint is in place.

Run as `python crash_after_checkpoint.py <safealign args>`. A kill from outside races the training (on a fast
machine the stage can finish before the poller sees a checkpoint); this one lands at the same step every time:
after `checkpoint-N` has been renamed into place and before step N+1, as a crash would.
"""

import os
import signal
import sys

from safealign import training
from safealign.cli import main

_save = training.AtomicCheckpointMixin._save_checkpoint


def _save_then_die(self, model, trial):
    _save(self, model, trial)
    os.kill(os.getpid(), signal.SIGKILL)


training.AtomicCheckpointMixin._save_checkpoint = _save_then_die
sys.exit(main(sys.argv[1:]))
