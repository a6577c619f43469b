"""A training stage run as `<launcher> -m safealign.cli <command> ...` in a child process (one process per GPU
under `accelerate launch` / `torchrun`), with the stage's exact config written next to run.json."""

from __future__ import annotations

import logging
import shlex
import subprocess
from pathlib import Path

import yaml

from ..errors import SafeAlignError
from ..fileio import read_json, write_text
from ..layout import RunLayout

log = logging.getLogger(__name__)


def launch(cfg, layout: RunLayout, launcher: str, stage: str, command: list[str], out: Path,
           resume: str | None, summary: Path) -> dict:
    """Run `command` (a `safealign` subcommand with its own flags) under `launcher`; returns the summary file
    the stage wrote (`summary`), or {} when it wrote none."""
    cfg_file = layout.stage_config(stage)
    write_text(cfg_file, yaml.safe_dump(cfg.raw, sort_keys=False))
    argv = shlex.split(launcher) + ["-m", "safealign.cli", *command, "--config", str(cfg_file),
                                    "--run-dir", str(layout.root), "--data-dir", str(layout.data_dir),
                                    "--output", str(out)]
    if resume:
        argv += ["--resume", resume]
    log.info("stage %s: %s", stage, shlex.join(argv))
    code = subprocess.call(argv)
    if code != 0:
        raise SafeAlignError(f"stage {stage}: `{shlex.join(argv[:4])} ...` exited with code {code}")
    return read_json(summary) if summary.is_file() else {}
