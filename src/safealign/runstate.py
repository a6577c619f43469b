"""`run.json`: the pipeline's bookkeeping of one run directory.

One record per stage: status, when it started and finished, how long it took, the hash of the config
sections it reads, the hash of its inputs (the files it reads), its outputs and the summary its entry point
returned. The pipeline skips a stage whose record says `done` with the same config hash and inputs hash
and whose outputs still exist.

Input and output hashes are *manifests* (relative path, size, mtime of every file), not content hashes: a
7B model folder is hashed in milliseconds, and a stage that rewrote a file changes its hash (a rewrite is a
new input for what reads it, even when the bytes happen to be identical).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from .fileio import read_json, write_json
from .layout import RunLayout

STATUSES = ("pending", "running", "done", "failed", "interrupted", "disabled")
VERSION = 1


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def manifest(paths: Iterable[str | os.PathLike]) -> list[list]:
    """[relpath, size, mtime_ns] of every visible file under `paths` (a missing path is listed as such).

    Hidden entries (".name") are temporary files of atomic writes or locks; they are not part of a result.
    """
    rows: list[list] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            rows.append([str(root), "missing", 0])
            continue
        if root.is_file():
            st = root.stat()
            rows.append([str(root), st.st_size, st.st_mtime_ns])
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                p = Path(dirpath) / name
                st = p.stat()
                rows.append([str(p), st.st_size, st.st_mtime_ns])
    return rows


def hash_obj(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hash_paths(paths: Iterable[str | os.PathLike]) -> str:
    return hash_obj(manifest(paths))


class RunState:
    """Load, update and atomically save a run's `run.json` (`layout.run_json`; every change is written at once,
    so a killed pipeline leaves an accurate record of what finished)."""

    def __init__(self, layout: RunLayout):
        self.run_dir = layout.root
        self.path = layout.run_json
        if self.path.is_file():
            self.data = read_json(self.path)
        else:
            self.data = {"version": VERSION, "run_dir": str(self.run_dir), "created_at": now_iso(), "stages": {}}
        self.data.setdefault("stages", {})

    # ------------------------------------------------------------------ records
    def record(self, stage: str) -> dict:
        return self.data["stages"].get(stage, {})

    def update(self, stage: str, **fields) -> dict:
        rec = self.data["stages"].setdefault(stage, {})
        rec.update(fields)
        self.save()
        return rec

    def save(self) -> None:
        self.data["updated_at"] = now_iso()
        write_json(self.path, self.data)

    # ------------------------------------------------------------------ decisions
    def is_up_to_date(self, stage: str, config_hash: str, inputs_hash: str, outputs: list[Path]) -> tuple[bool, str]:
        """(True, "") when the stage finished with this config and these inputs and its outputs exist;
        otherwise (False, why it must run)."""
        rec = self.record(stage)
        if rec.get("status") != "done":
            status = rec.get("status")
            why = {None: "first run", "running": "its last run was killed", "failed": "its last run failed",
                   "interrupted": "its last run was interrupted", "disabled": "newly enabled"}
            return False, why.get(status, f"last status: {status}")
        if rec.get("config_hash") != config_hash:
            return False, "config changed"
        if rec.get("inputs_hash") != inputs_hash:
            return False, "inputs changed"
        missing = [str(p) for p in outputs if not Path(p).exists()]
        if missing:
            return False, f"output missing: {missing[0]}"
        return True, ""

    def was_interrupted(self, stage: str, config_hash: str, inputs_hash: str) -> bool:
        """The stage started with this same config and inputs and did not finish (killed, failed)."""
        rec = self.record(stage)
        return (rec.get("status") in ("running", "failed", "interrupted")
                and rec.get("config_hash") == config_hash and rec.get("inputs_hash") == inputs_hash)
