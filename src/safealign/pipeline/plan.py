"""The pipeline's plan: every stage of a run in order, each a call of its module's public entry point.

Every path comes from the run's `RunLayout`; the policy alignment starts from, which is also the report's
`base`, is `layout.policy_start` (one rule). A stage names the config sections whose settings make its config
hash, the files it reads (hashed: a changed input reruns it) and the outputs it must leave behind.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

from ..data.prepare import run_prepare
from ..distill import run_distill
from ..dpo.train import run_train_dpo
from ..errors import ConfigError, SafeAlignError
from ..evaluation.report import build_report
from ..evaluation.run import evaluate_model
from ..fileio import read_json
from ..layout import RM_DIMENSIONS, RunLayout
from ..models.base import ensure_base_model
from ..rm.train import run_train_rm
from ..sft import run_sft_warmup
from .launch import launch

log = logging.getLogger(__name__)


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


def model_names(cfg) -> list[str]:
    """Names of the aligned models the run trains: the main `dpo.algorithm` first, then the ablations."""
    main = cfg.section("dpo").algorithm
    return [main] + [a for a in cfg.section("pipeline").ablations if a != main]


def ablation_config(cfg, algo: str):
    """The config of ablation `algo`: the run's config with `dpo.algorithm` replaced (its checkpoints go to
    `layout.checkpoints("dpo_<algo>")`, the stage's own folder)."""
    return cfg.with_overrides([("dpo.algorithm", algo)])


def _local(path: str) -> list[Path]:
    """`path` as an input to hash when it is a folder of this machine (a Hub id is part of the config)."""
    return [Path(path)] if Path(path).exists() else []


# --------------------------------------------------------------------------- the plan
def build_plan(cfg) -> list[Stage]:
    """Every stage in order for this config (disabled ones included, marked)."""
    layout = RunLayout.from_config(cfg)
    seed = {"seed": cfg.section("run").seed}
    policy_in = [Path(layout.policy_start)] if layout.policy_start_is_local else []
    judges_in = [Path(layout.judge(dim)) for dim in RM_DIMENSIONS]
    stages = [_prepare(cfg, layout), _base(cfg, layout, seed), _sft(cfg, layout, seed)]
    stages += [_reward_model(cfg, layout, dim, seed) for dim in RM_DIMENSIONS]
    aligned = [(algo, layout.aligned(None if i == 0 else algo)) for i, algo in enumerate(model_names(cfg))]
    stages += [_align(cfg, layout, algo, out, main=(i == 0), inputs=[layout.data_dir] + policy_in + judges_in,
                      seed=seed) for i, (algo, out) in enumerate(aligned)]
    # evaluated models: (name in the report, path, inputs); the starting policy is the report's `base`
    models = [("base", layout.policy_start, policy_in)] + [(algo, str(out), [out]) for algo, out in aligned]
    stages += [_evaluate(cfg, layout, *m) for m in models]
    distill = _distill(cfg, layout, [layout.data_dir, aligned[0][1]] + judges_in, seed)
    stages.append(distill)
    if distill.enabled:
        models.append(("distilled", str(layout.distilled), [layout.distilled]))
        stages.append(_evaluate(cfg, layout, *models[-1]))
    stages.append(_report(layout, [name for name, _, _ in models]))
    for st in stages:
        st.cfg = st.cfg or cfg
    return stages


def _prepare(cfg, layout: RunLayout) -> Stage:
    data = cfg.section("data")

    def run(_resume):
        return run_prepare(data, cfg.section("toy"), str(layout.data_dir))

    # a local dataset file/folder is an input; a Hub id is part of the config
    inputs = _local(data.dataset) if data.dataset != "toy" else []
    return Stage("prepare", run, ["data", "toy"], inputs, [layout.split(s) for s in ("train", "val", "test")])


def _base(cfg, layout: RunLayout, seed: dict) -> Stage:
    """The embedded tiny model is built from the prepared texts; a Hub model needs nothing."""
    model = cfg.section("model")

    def run(_resume):
        if layout.base_model.exists():  # ensure_base_model keeps an existing model; a rerun means rebuild
            shutil.rmtree(layout.base_model)
        return {"path": ensure_base_model(cfg, layout.data_dir)}

    return Stage("base", run, ["model"], [layout.split("train")], [layout.base_model / "config.json"],
                 extra=seed, enabled=model.is_tiny,
                 why_disabled=f"model.name_or_path is {model.name_or_path!r} (loaded as is)")


def _base_inputs(cfg, layout: RunLayout) -> list[Path]:
    """What the reward models and the SFT warm-up are built on, when this run builds it (the tiny base)."""
    return [layout.base_model] if cfg.section("model").is_tiny else []


def _sft(cfg, layout: RunLayout, seed: dict) -> Stage:
    """The optional warm-up: it then is the policy's start and reference (`base` in the report)."""

    def run(resume):
        return run_sft_warmup(cfg, output_dir=str(layout.sft_model), resume=resume)

    return Stage("sft", run, ["sft", "model"], [layout.data_dir] + _base_inputs(cfg, layout),
                 [layout.sft_model / "config.json"], checkpoint_dir=layout.checkpoints("sft"), extra=seed,
                 enabled=layout.start == "sft", why_disabled="sft.enabled is false")


def _reward_model(cfg, layout: RunLayout, dim: str, seed: dict) -> Stage:
    name, out = f"{dim}_rm", layout.rm(dim)
    launcher = cfg.section("pipeline").launcher

    def run(resume):
        if launcher:
            return launch(cfg, layout, launcher, name, ["train-rm", "--dimension", dim], out, resume,
                          out / "metrics.json")
        return run_train_rm(cfg, dim, data_dir=str(layout.data_dir), output_dir=str(out), resume=resume)

    return Stage(name, run, ["reward", "model"], [layout.data_dir] + _base_inputs(cfg, layout), [out / "config.json"],
                 checkpoint_dir=layout.checkpoints(name), extra=seed)


def _align(cfg, layout: RunLayout, algo: str, out: Path, main: bool, inputs: list[Path], seed: dict) -> Stage:
    """The aligned policy (`dpo`) or an ablation (`dpo_<algo>`: same data, judges and precompute cache)."""
    name = "dpo" if main else f"dpo_{algo}"
    scfg = cfg if main else ablation_config(cfg, algo)
    launcher = cfg.section("pipeline").launcher

    def run(resume):
        if launcher:
            return launch(scfg, layout, launcher, name, ["train-dpo", "--stage", name], out, resume,
                          out / "train_summary.json")
        return run_train_dpo(scfg, data_dir=str(layout.data_dir), output_dir=str(out), resume=resume, stage=name)

    return Stage(name, run, ["dpo", "model", "sft"], inputs, [out / "config.json"],
                 checkpoint_dir=layout.checkpoints(name), extra={**seed, "algorithm": algo}, cfg=scfg)


def _evaluate(cfg, layout: RunLayout, name: str, model_path: str, model_inputs: list[Path]) -> Stage:
    what = cfg.section("pipeline").evaluate

    def run(_resume):
        return evaluate_model(cfg, name, model_path, what, str(layout.results))

    return Stage(f"evaluate_{name}", run, ["eval", "toy"], [layout.split("test")] + model_inputs,
                 [layout.result(name)], extra={"what": what, "model": model_path})


def _distill(cfg, layout: RunLayout, inputs: list[Path], seed: dict) -> Stage:
    def run(resume):
        return run_distill(cfg, output_dir=str(layout.distilled), resume=resume)

    return Stage("distill", run, ["distill", "model"], inputs, [layout.distilled / "config.json"],
                 checkpoint_dir=layout.checkpoints("distill"), extra=seed,
                 enabled=cfg.section("distill").enabled, why_disabled="distill.enabled is false")


def _report(layout: RunLayout, names: list[str]) -> Stage:
    def run(_resume):
        out = build_report(str(layout.results), str(layout.results), base_name="base", logs_dir=layout.logs,
                           models=names)
        check_report(layout.report("json"), names)
        others = out.get("not_included", [])
        if others:  # e.g. a model evaluated by an earlier run with another dpo.algorithm or ablation list
            log.warning("report: results/ also holds %s, not in this run's plan: left out of the report",
                        ", ".join(others))
        return {"models": names, "not_in_plan": others, "plots": out.get("plots", {})}

    return Stage("report", run, ["eval"], [layout.result(n) for n in names],
                 [layout.report("json"), layout.report("md")], extra={"models": names})


def check_report(path: Path, names: list[str]) -> None:
    """The report must list every evaluated model with its safety rate (the pipeline's promise)."""
    if not path.is_file():
        raise SafeAlignError(f"stage report: {path} was not written")
    missing = [n for n in names if n not in read_json(path).get("models", {})]
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
