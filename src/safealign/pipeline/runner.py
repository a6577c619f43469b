"""`run_pipeline`: run the plan's stages against `run.json`, skipping what is done, resuming what was cut.

`run.json` in the run directory records each stage's status, time, config hash, inputs hash and outputs (see
`runstate`). A rerun skips every stage that finished with the same config and inputs; a stage that was
interrupted reruns, resuming from its latest Trainer checkpoint when it has one. `--from STAGE` reruns STAGE and
everything after it; `--only STAGE` reruns that stage alone (a prefix such as `evaluate` names every
`evaluate_*` stage).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ..config import save_resolved
from ..errors import ConfigError, SafeAlignError
from ..fileio import write_text
from ..layout import RunLayout
from ..runstate import RunState, hash_obj, hash_paths, manifest, now_iso
from .plan import Stage, build_plan, select_stages

log = logging.getLogger(__name__)


def run_pipeline(cfg, from_stage: str | None = None, only_stage: str | None = None,
                 until: str | None = None) -> dict:
    """Run the pipeline for `cfg`; returns the run.json data. Raises on the first failing stage.

    `until`: stop after this stage (the sweep uses it to get the data and the two judges).
    """
    layout = RunLayout.from_config(cfg)
    layout.root.mkdir(parents=True, exist_ok=True)
    stages = build_plan(cfg)
    if until is not None:
        names = [s.name for s in stages]
        if until not in names:
            raise ConfigError(f"until: unknown stage {until!r}; stages: {', '.join(names)}")
        stages = stages[: names.index(until) + 1]
    forced = select_stages(stages, from_stage, only_stage)
    state = RunState(layout)
    state.data["config"] = cfg.source
    state.data["order"] = [s.name for s in stages]
    started = time.time()
    invocation = {"started_at": now_iso(), "from": from_stage, "only": only_stage, "ran": [], "skipped": []}
    state.data["last_invocation"] = invocation
    state.save()
    save_resolved(cfg, layout.config_file)
    n = len(stages)
    for i, st in enumerate(stages, 1):
        if not st.enabled:
            state.update(st.name, status="disabled", reason=st.why_disabled)
            _line(i, n, st.name, "disabled", st.why_disabled)
            continue
        # The run's own settings (an ablation differs by `extra.algorithm`; its checkpoint path is derived from
        # the run directory, so moving the run directory does not make it stale).
        config_hash = hash_obj([cfg.fingerprint(st.sections), st.extra])
        if forced and st.name not in forced:
            _line(i, n, st.name, "not selected")
            continue
        inputs_hash = hash_paths(st.inputs)
        if st.name not in forced:
            ok, why = state.is_up_to_date(st.name, config_hash, inputs_hash, st.outputs)
            if ok:
                invocation["skipped"].append(st.name)
                _line(i, n, st.name, "skipped", f"up to date (done {state.record(st.name).get('finished_at', '?')})")
                continue
        else:
            why = "selected with --from/--only"
        _check_inputs(st, stages)
        resume = _resume_or_clear(cfg, st, state, config_hash, inputs_hash)
        _line(i, n, st.name, "running", f"({why})" + (" resuming from its latest checkpoint" if resume else ""))
        _run_stage(st, state, resume, config_hash, inputs_hash,
                   say_failed=lambda msg: _line(i, n, st.name, "FAILED", msg))
        invocation["ran"].append(st.name)
        _line(i, n, st.name, "done", f"{state.record(st.name)['seconds']:.1f}s")
    invocation["finished_at"] = now_iso()
    invocation["seconds"] = round(time.time() - started, 2)
    state.save()
    _write_summary(state, stages, layout)
    return state.data


def _resume_or_clear(cfg, st: Stage, state: RunState, config_hash: str, inputs_hash: str) -> str | None:
    """"latest" for an interrupted stage (its record still says running, also when --only names it) that left a
    checkpoint with this same config and inputs; otherwise its stale checkpoints are removed."""
    ckpt = st.checkpoint_dir
    has_checkpoint = ckpt is not None and ckpt.is_dir() and any(p.is_dir() for p in ckpt.glob("checkpoint-*"))
    if (cfg.section("pipeline").resume and has_checkpoint
            and state.was_interrupted(st.name, config_hash, inputs_hash)):
        return "latest"
    if ckpt is not None and ckpt.is_dir():
        log.info("removing stale checkpoints in %s (config or inputs changed)", ckpt)
        shutil.rmtree(ckpt)
    return None


def _run_stage(st: Stage, state: RunState, resume: str | None, config_hash: str, inputs_hash: str,
               say_failed) -> None:
    """Call the stage, recording it as running first, then done (or failed/interrupted) in run.json."""
    prev = state.record(st.name)
    state.update(st.name, status="running", started_at=now_iso(), finished_at=None, seconds=None,
                 config_hash=config_hash, inputs_hash=inputs_hash, resumed=bool(resume),
                 runs=int(prev.get("runs", 0)) + 1, error=None)
    t0 = time.time()
    try:
        result = st.run(resume)
    except KeyboardInterrupt:
        state.update(st.name, status="interrupted", seconds=round(time.time() - t0, 2), error="interrupted")
        raise
    except BaseException as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        state.update(st.name, status="failed", seconds=round(time.time() - t0, 2), error=msg)
        say_failed(msg)
        raise
    missing = [str(p) for p in st.outputs if not Path(p).exists()]
    if missing:
        state.update(st.name, status="failed", seconds=round(time.time() - t0, 2),
                     error=f"output not written: {missing[0]}")
        raise SafeAlignError(f"stage {st.name}: finished but did not write {missing[0]}")
    state.update(st.name, status="done", finished_at=now_iso(), seconds=round(time.time() - t0, 2),
                 outputs=[str(p) for p in st.outputs], outputs_hash=hash_obj(manifest(st.outputs)),
                 result=_summarize(result))


def _check_inputs(st: Stage, stages: list[Stage]) -> None:
    """A stage whose input is missing names the stage that makes it (e.g. after `--only` on a fresh run)."""
    for p in st.inputs:
        if Path(p).exists():
            continue
        maker = next((s.name for s in stages for o in s.outputs if o == p or o.parent == p), None)
        hint = f"; run stage {maker} first" if maker else ""
        raise SafeAlignError(f"stage {st.name}: input {p} does not exist{hint}")


def _summarize(result: Any) -> Any:
    """The JSON-friendly part of a stage's returned summary (large lists cut) for run.json."""
    try:
        text = json.dumps(result, default=str)
    except (TypeError, ValueError):
        return repr(result)[:500]
    if len(text) > 20000:
        return {"truncated": True, "keys": sorted(result) if isinstance(result, dict) else None}
    return json.loads(text)


def _line(i: int, n: int, name: str, status: str, note: str = "") -> None:
    print(f"[{i:>2}/{n}] {name:<24} {status}{('  ' + note) if note else ''}", flush=True)


def _write_summary(state: RunState, stages: list[Stage], layout: RunLayout) -> None:
    """Overall summary: printed, and `run.md` next to run.json."""
    inv = state.data.get("last_invocation", {})
    rows = ["| stage | status | seconds | finished |", "|---|---|---:|---|"]
    total = 0.0
    for st in stages:
        rec = state.record(st.name)
        secs = rec.get("seconds")
        total += (secs or 0) if rec.get("status") == "done" else 0
        mark = "ran now" if st.name in inv.get("ran", []) else ("skipped" if st.name in inv.get("skipped", []) else "")
        rows.append(f"| {st.name} | {rec.get('status', 'pending')}{' (' + mark + ')' if mark else ''} | "
                    f"{'' if secs is None else f'{secs:.1f}'} | {rec.get('finished_at') or ''} |")
    text = (f"# Pipeline run `{layout.root}`\n\nThis invocation: {inv.get('seconds', 0):.1f} s, "
            f"ran {len(inv.get('ran', []))} stage(s), skipped {len(inv.get('skipped', []))}. "
            f"Sum of the recorded stage times: {total:.1f} s.\n\n" + "\n".join(rows) + "\n")
    if layout.report("md").is_file():
        text += f"\nReport: `{layout.report('md')}`\n"
    write_text(layout.run_md, text)
    print(f"pipeline: {inv.get('seconds', 0):.1f} s this run; ran {', '.join(inv.get('ran', [])) or 'nothing'}; "
          f"skipped {len(inv.get('skipped', []))}; summary in {layout.run_md}", flush=True)


def cli_main(cfg, args) -> int:
    run_pipeline(cfg, from_stage=getattr(args, "from_stage", None), only_stage=getattr(args, "only_stage", None))
    return 0
