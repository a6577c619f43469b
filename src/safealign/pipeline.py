"""`safealign pipeline`: every stage in order, in one run directory, resumably.

prepare -> base (tiny model build) -> sft (optional warm-up) -> helpful_rm -> harmless_rm -> dpo (precompute
inside) -> dpo_<algo> for each ablation -> evaluate_<model> -> distill + evaluate_distilled (optional) -> report

Each stage is a call of its module's entry point (the same one its own subcommand uses). `run.json` in the run
directory records each stage's status, time, config hash, inputs hash and outputs (see `runstate`). A rerun skips
every stage that finished with the same config and inputs; a stage that was interrupted reruns, resuming from its
latest Trainer checkpoint when it has one. `--from STAGE` reruns STAGE and everything after it; `--only STAGE`
reruns that stage alone (a prefix such as `evaluate` names every `evaluate_*` stage).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal

from .errors import ConfigError, SafeAlignError
from .runstate import RunState, hash_obj, hash_paths, manifest, now_iso

log = logging.getLogger(__name__)

ALGORITHMS = ("dpo", "mm_dpo", "safe_dpo", "safe_mm_dpo")


@dataclasses.dataclass
class PipelineConfig:
    """Section `pipeline`: what the pipeline runs besides the main Safe-MM-DPO stage.

    ablations: extra `dpo.algorithm` values trained by the same pipeline (stage `dpo_<algo>`, model
               `models/aligned_<algo>`, evaluated and reported as `<algo>`) with the same data, RMs and
               precompute cache. An ablation equal to `dpo.algorithm` is dropped (it is the main run).
    evaluate:  which evaluation every model gets (`safety`, `mt-bench` or `all`; see section `eval`).
    resume:    an interrupted training stage continues from its latest checkpoint (else it starts over).
    """

    ablations: list[str] = dataclasses.field(default_factory=list)
    evaluate: Literal["safety", "mt-bench", "all"] = "safety"
    resume: bool = True
    # Multi-GPU: the reward-model and DPO stages run as `<launcher> -m safealign.cli train-... ` in a child
    # process, e.g. "accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml"; None: in-process.
    launcher: str | None = None

    def __post_init__(self):
        for i, algo in enumerate(self.ablations):
            if algo not in ALGORITHMS:
                raise ConfigError(f"ablations[{i}]: must be one of {', '.join(ALGORITHMS)} (got {algo!r})")
        if len(set(self.ablations)) != len(self.ablations):
            raise ConfigError(f"ablations: listed twice: {self.ablations}")


@dataclasses.dataclass
class Stage:
    """One step of the pipeline. `run(resume)` calls the stage's entry point and returns its summary dict."""

    name: str
    run: Callable[[str | None], Any]
    sections: list[str]  # config sections whose raw settings make the config hash
    inputs: list[Path] = dataclasses.field(default_factory=list)  # files/folders read (hashed)
    outputs: list[Path] = dataclasses.field(default_factory=list)  # must exist once done
    checkpoint_dir: Path | None = None  # Trainer checkpoints: an interrupted stage resumes from here
    extra: dict = dataclasses.field(default_factory=dict)  # more settings in the config hash
    enabled: bool = True
    why_disabled: str = ""
    cfg: Any = None  # the Config this stage runs with (ablations override dpo.algorithm)


# --------------------------------------------------------------------------- entry points, imported lazily
def _entry(stage: str, module: str, func: str) -> Callable:
    """Import `module.func`; a stage whose module is not written yet fails with one clear line."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("safealign"):
            raise SafeAlignError(f"stage {stage}: {module} is not built yet (missing module {err.name})") from None
        raise
    if not hasattr(mod, func):
        raise SafeAlignError(f"stage {stage}: {module}.{func} is not built yet")
    return getattr(mod, func)


def _optional_section(cfg, name: str):
    """The section's dataclass, or None when its module does not exist yet and the config does not use it."""
    try:
        return cfg.section(name)
    except ImportError:
        if name in cfg.raw:
            raise SafeAlignError(f"section {name}: configured, but its module is not built yet") from None
        return None


def _clear_checkpoints(path: Path | None) -> None:
    if path is not None and path.is_dir():
        log.info("removing stale checkpoints in %s (config or inputs changed)", path)
        shutil.rmtree(path)


def _has_checkpoint(path: Path | None) -> bool:
    return path is not None and path.is_dir() and any(p.is_dir() for p in path.glob("checkpoint-*"))


# --------------------------------------------------------------------------- the plan
def model_names(cfg) -> list[str]:
    """Names of the aligned models the run trains: the main `dpo.algorithm` first, then the ablations."""
    main = cfg.section("dpo").algorithm
    return [main] + [a for a in cfg.section("pipeline").ablations if a != main]


def ablation_config(cfg, algo: str):
    """The config of ablation `algo`: the run's config with `dpo.algorithm` replaced (Trainer checkpoints in
    their own folder so they never mix with the main run's)."""
    run_dir = cfg.section("run").directory
    return cfg.with_overrides([("dpo.algorithm", algo),
                               ("dpo.output_dir", str(run_dir / "checkpoints" / f"dpo_{algo}"))])


def build_plan(cfg) -> list[Stage]:
    """Every stage in order for this config (disabled ones included, marked)."""
    run = cfg.section("run")
    pipe = cfg.section("pipeline")
    model = cfg.section("model")
    rd = run.directory
    data_cfg = cfg.section("data")
    data_dir = Path(data_cfg.output_dir) if data_cfg.output_dir else rd / "data"
    models = rd / "models"
    results = rd / "results"
    ckpt = rd / "checkpoints"
    seed = {"seed": run.seed}
    stages: list[Stage] = []

    # prepare: a local dataset file/folder is an input; a Hub id is part of the config.
    ds = Path(data_cfg.dataset)
    prep_inputs = [ds] if data_cfg.dataset != "toy" and ds.exists() else []

    def _prepare(_resume):
        return _entry("prepare", "safealign.data.prepare", "run_prepare")(
            cfg.section("data"), cfg.section("toy"), str(data_dir))

    splits = [data_dir / f"{split}.jsonl" for split in ("train", "val", "test")]
    stages.append(Stage("prepare", _prepare, ["data", "toy"], prep_inputs, splits))

    # base: the embedded tiny model is built from the prepared texts; a Hub model needs nothing.
    base_dir = models / "base"

    def _base(_resume):
        from .models.base import ensure_base_model

        if base_dir.exists():  # ensure_base_model keeps an existing model; a rerun means rebuild
            shutil.rmtree(base_dir)
        return {"path": ensure_base_model(cfg, data_dir)}

    stages.append(Stage("base", _base, ["model"], [data_dir / "train.jsonl"], [base_dir / "config.json"],
                        extra=seed, enabled=model.is_tiny,
                        why_disabled=f"model.name_or_path is {model.name_or_path!r} (loaded as is)"))
    base_in = [base_dir] if model.is_tiny else []

    # sft: optional warm-up of the policy; it then is the policy's start and reference ("base" in the report).
    sft = _optional_section(cfg, "sft")
    sft_on = bool(sft is not None and getattr(sft, "enabled", False))
    sft_dir = models / "sft"

    def _sft(resume):
        return _entry("sft", "safealign.sft", "run_sft_warmup")(
            cfg, data_dir=str(data_dir), output_dir=str(sft_dir), resume=resume)

    stages.append(Stage("sft", _sft, ["sft", "model"], [data_dir] + base_in, [sft_dir / "config.json"],
                        checkpoint_dir=ckpt / "sft", extra=seed, enabled=sft_on, why_disabled="sft.enabled is false"))
    policy_in = [sft_dir] if sft_on else base_in

    # the two judges
    for dim in ("helpful", "harmless"):
        out = models / f"{dim}_rm"

        def _rm(resume, dim=dim, out=out):
            if pipe.launcher:
                return _launch(cfg, pipe.launcher, f"{dim}_rm", ["train-rm", "--dimension", dim], data_dir, out,
                               resume, out / "metrics.json")
            return _entry(f"{dim}_rm", "safealign.rm.train", "run_train_rm")(
                cfg, dim, data_dir=str(data_dir), output_dir=str(out), resume=resume)

        stages.append(Stage(f"{dim}_rm", _rm, ["reward", "model"], [data_dir] + base_in, [out / "config.json"],
                            checkpoint_dir=ckpt / f"{dim}_rm", extra=seed))
    rm_in = [models / "helpful_rm", models / "harmless_rm"]

    # the aligned policy and its ablations
    names = model_names(cfg)
    aligned: dict[str, Path] = {}
    for i, algo in enumerate(names):
        name = "dpo" if i == 0 else f"dpo_{algo}"
        out = models / ("aligned" if i == 0 else f"aligned_{algo}")
        scfg = cfg if i == 0 else ablation_config(cfg, algo)
        aligned[algo] = out

        def _dpo(resume, scfg=scfg, out=out, name=name):
            if pipe.launcher:
                return _launch(scfg, pipe.launcher, name, ["train-dpo"], data_dir, out, resume,
                               out / "train_summary.json")
            return _entry(name, "safealign.dpo.train", "run_train_dpo")(
                scfg, data_dir=str(data_dir), output_dir=str(out), resume=resume)

        stages.append(Stage(name, _dpo, ["dpo", "model", "sft"], [data_dir] + policy_in + rm_in,
                            [out / "config.json"], checkpoint_dir=_dpo_checkpoints(scfg, ckpt / name),
                            extra={**seed, "algorithm": algo}, cfg=scfg))

    # evaluation of the starting policy, every aligned model, and the student
    base_model = sft_dir if sft_on else (base_dir if model.is_tiny else None)
    base_ref = str(base_model) if base_model is not None else model.name_or_path
    evaluated: list[str] = []

    def _eval_stage(mname: str, mpath: str, model_inputs: list[Path]):
        out = results / mname

        def _ev(_resume):
            return _entry(f"evaluate_{mname}", "safealign.evaluation.run", "evaluate_model")(
                cfg, mname, mpath, pipe.evaluate, str(results))

        evaluated.append(mname)
        return Stage(f"evaluate_{mname}", _ev, ["eval", "toy"], [data_dir / "test.jsonl"] + model_inputs, [out],
                     extra={"what": pipe.evaluate, "model": mpath})

    stages.append(_eval_stage("base", base_ref, [base_model] if base_model else []))
    for algo in names:
        stages.append(_eval_stage(algo, str(aligned[algo]), [aligned[algo]]))

    dist = _optional_section(cfg, "distill")
    dist_on = bool(dist is not None and getattr(dist, "enabled", False))
    dist_dir = models / "distilled"

    def _distill(_resume):
        return _entry("distill", "safealign.distill", "run_distill")(cfg, output_dir=str(dist_dir), resume=_resume)

    stages.append(Stage("distill", _distill, ["distill", "model"], [data_dir, aligned[names[0]]] + rm_in,
                        [dist_dir / "config.json"], checkpoint_dir=ckpt / "distill", extra=seed,
                        enabled=dist_on, why_disabled="distill.enabled is false"))
    if dist_on:
        stages.append(_eval_stage("distilled", str(dist_dir), [dist_dir]))

    report_names = list(evaluated)

    def _report(_resume):
        out = _entry("report", "safealign.evaluation.report", "build_report")(
            str(results), str(results), base_name="base", run_dir=str(rd), models=report_names)
        _check_report(results / "report.json", report_names)
        others = out.get("not_included", [])
        if others:  # e.g. a model evaluated by an earlier run with another dpo.algorithm or ablation list
            log.warning("report: results/ also holds %s, not in this run's plan: left out of the report",
                        ", ".join(others))
        return {"models": report_names, "not_in_plan": others, "plots": out.get("plots", {})}

    stages.append(Stage("report", _report, ["eval"], [results / n for n in report_names],
                        [results / "report.json", results / "report.md"], extra={"models": report_names}))
    for st in stages:
        st.cfg = st.cfg or cfg
    return stages


def _launch(cfg, launcher: str, stage: str, command: list[str], data_dir: Path, out: Path, resume: str | None,
            summary: Path) -> dict:
    """Run a training stage as `<launcher> -m safealign.cli <command> ...` (one process per GPU) with this
    stage's exact config written next to run.json; returns the summary file the stage wrote."""
    import shlex
    import subprocess

    import yaml

    from .fileio import read_json, write_text

    run_dir = cfg.section("run").directory
    cfg_file = run_dir / "stage_configs" / f"{stage}.yaml"
    write_text(cfg_file, yaml.safe_dump(cfg.raw, sort_keys=False))
    argv = shlex.split(launcher) + ["-m", "safealign.cli", *command, "--config", str(cfg_file),
                                    "--run-dir", str(run_dir), "--data-dir", str(data_dir), "--output", str(out)]
    if resume:
        argv += ["--resume", resume]
    log.info("stage %s: %s", stage, shlex.join(argv))
    code = subprocess.call(argv)
    if code != 0:
        raise SafeAlignError(f"stage {stage}: `{shlex.join(argv[:4])} ...` exited with code {code}")
    return read_json(summary) if summary.is_file() else {}


def _dpo_checkpoints(scfg, default: Path) -> Path:
    """Where the DPO Trainer of this stage keeps its checkpoints (`dpo.output_dir` when set)."""
    out = scfg.raw.get("dpo", {}).get("output_dir") if isinstance(scfg.raw.get("dpo"), dict) else None
    return Path(out) if out else default


def _check_inputs(st: Stage, stages: list[Stage]) -> None:
    """A stage whose input is missing names the stage that makes it (e.g. after `--only` on a fresh run)."""
    for p in st.inputs:
        if Path(p).exists():
            continue
        maker = next((s.name for s in stages for o in s.outputs if o == p or o.parent == p), None)
        hint = f"; run stage {maker} first" if maker else ""
        raise SafeAlignError(f"stage {st.name}: input {p} does not exist{hint}")


def _check_report(path: Path, names: list[str]) -> None:
    """The report must list every evaluated model with its safety rate (the pipeline's promise)."""
    from .fileio import read_json

    if not path.is_file():
        raise SafeAlignError(f"stage report: {path} was not written")
    models = read_json(path).get("models", {})
    missing = [n for n in names if n not in models]
    if missing:
        raise SafeAlignError(f"stage report: {path}: models missing: {', '.join(missing)}")


# --------------------------------------------------------------------------- selection
def select_stages(stages: list[Stage], from_stage: str | None = None, only_stage: str | None = None) -> set[str]:
    """Names of the stages forced to run (`--from` / `--only`); a prefix like `evaluate` names a group."""
    names = [s.name for s in stages]

    def match(key: str) -> list[str]:
        hits = [n for n in names if n == key] or [n for n in names if n.startswith(key + "_")]
        if not hits:
            raise ConfigError(f"--from/--only {key}: unknown stage; stages: {', '.join(names)}")
        return hits

    if from_stage and only_stage:
        raise ConfigError("--from and --only: give one of them")
    if only_stage:
        return set(match(only_stage))
    if from_stage:
        first = names.index(match(from_stage)[0])
        return set(names[first:])
    return set()


# --------------------------------------------------------------------------- running
def _summarize(result: Any) -> Any:
    """The JSON-friendly part of a stage's returned summary (large lists cut) for run.json."""
    import json

    try:
        text = json.dumps(result, default=str)
    except (TypeError, ValueError):
        return repr(result)[:500]
    if len(text) > 20000:
        return {"truncated": True, "keys": sorted(result) if isinstance(result, dict) else None}
    return json.loads(text)


def _line(i: int, n: int, name: str, status: str, note: str = "") -> None:
    print(f"[{i:>2}/{n}] {name:<24} {status}{('  ' + note) if note else ''}", flush=True)


def run_pipeline(cfg, from_stage: str | None = None, only_stage: str | None = None,
                 until: str | None = None) -> dict:
    """Run the pipeline for `cfg`; returns the run.json data. Raises on the first failing stage.

    `until`: stop after this stage (the sweep uses it to get the data and the two judges).
    """
    run_dir = cfg.section("run").directory
    run_dir.mkdir(parents=True, exist_ok=True)
    stages = build_plan(cfg)
    if until is not None:
        names = [s.name for s in stages]
        if until not in names:
            raise ConfigError(f"until: unknown stage {until!r}; stages: {', '.join(names)}")
        stages = stages[: names.index(until) + 1]
    forced = select_stages(stages, from_stage, only_stage)
    state = RunState(run_dir)
    state.data["config"] = cfg.source
    state.data["order"] = [s.name for s in stages]
    started = time.time()
    invocation = {"started_at": now_iso(), "from": from_stage, "only": only_stage, "ran": [], "skipped": []}
    state.data["last_invocation"] = invocation
    state.save()
    _write_config(cfg, run_dir)
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
                rec = state.record(st.name)
                _line(i, n, st.name, "skipped", f"up to date (done {rec.get('finished_at', '?')})")
                continue
        else:
            why = "selected with --from/--only"
        _check_inputs(st, stages)
        resume = None
        # An interrupted stage (killed: its record still says running) resumes, also when --only names it.
        if (cfg.section("pipeline").resume and _has_checkpoint(st.checkpoint_dir)
                and state.was_interrupted(st.name, config_hash, inputs_hash)):
            resume = "latest"
        else:
            _clear_checkpoints(st.checkpoint_dir)
        note = f"({why})" + (" resuming from its latest checkpoint" if resume else "")
        _line(i, n, st.name, "running", note)
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
            _line(i, n, st.name, "FAILED", msg)
            raise
        missing = [str(p) for p in st.outputs if not Path(p).exists()]
        if missing:
            state.update(st.name, status="failed", seconds=round(time.time() - t0, 2),
                         error=f"output not written: {missing[0]}")
            raise SafeAlignError(f"stage {st.name}: finished but did not write {missing[0]}")
        secs = round(time.time() - t0, 2)
        state.update(st.name, status="done", finished_at=now_iso(), seconds=secs,
                     outputs=[str(p) for p in st.outputs], outputs_hash=hash_obj(manifest(st.outputs)),
                     result=_summarize(result))
        invocation["ran"].append(st.name)
        _line(i, n, st.name, "done", f"{secs:.1f}s")
    invocation["finished_at"] = now_iso()
    invocation["seconds"] = round(time.time() - started, 2)
    state.save()
    _write_summary(state, stages)
    return state.data


def _write_config(cfg, run_dir: Path) -> None:
    from .config import save_resolved

    try:
        save_resolved(cfg, run_dir / "config.yaml")
    except Exception as err:  # a section whose module is missing must not stop the bookkeeping
        log.warning("could not save the resolved config: %s", err)


def _write_summary(state: RunState, stages: list[Stage]) -> None:
    """Overall summary: printed, and `run.md` next to run.json."""
    from .fileio import write_text

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
    text = (f"# Pipeline run `{state.run_dir}`\n\nThis invocation: {inv.get('seconds', 0):.1f} s, "
            f"ran {len(inv.get('ran', []))} stage(s), skipped {len(inv.get('skipped', []))}. "
            f"Sum of the recorded stage times: {total:.1f} s.\n\n" + "\n".join(rows) + "\n")
    report = state.run_dir / "results" / "report.md"
    if report.is_file():
        text += f"\nReport: `{report}`\n"
    write_text(state.run_dir / "run.md", text)
    print(f"pipeline: {inv.get('seconds', 0):.1f} s this run; ran {', '.join(inv.get('ran', [])) or 'nothing'}; "
          f"skipped {len(inv.get('skipped', []))}; summary in {state.run_dir / 'run.md'}", flush=True)


def cli_main(cfg, args) -> int:
    run_pipeline(cfg, from_stage=getattr(args, "from_stage", None), only_stage=getattr(args, "only_stage", None))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["pipeline"] + sys.argv[1:]))
