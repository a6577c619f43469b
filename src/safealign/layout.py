"""`RunLayout`: the one owner of every path under a run directory, and of the base-policy rule.

Every stage asks the layout where to read and write; no other module joins run-dir path pieces. The rule
"which policy does alignment start from, and which model is the report's base" lives here too, decided by the
config (never by a leftover folder): the SFT warm-up when `sft.enabled`, else the embedded tiny base when
`model.name_or_path: tiny`, else the configured Hub id or path.

```
<run>/data/                 train/val/test.jsonl, safety_*.jsonl, stats.*   (or `data.output_dir`)
<run>/models/<name>/        base, sft, helpful_rm, harmless_rm, aligned, aligned_<algo>, distilled
<run>/checkpoints/<stage>/  Trainer checkpoints (atomic)
<run>/logs/<stage>/         TensorBoard events;  <run>/logs/<stage>.log  the stage's plain-text log
<run>/cache/<what>/         precompute, distill teacher samples
<run>/results/<model>/      evaluation outputs; results/report.{md,json}, plots
<run>/distill/              distillation data and filter report
<run>/sweep/                the λ_init × w grid (its points are sub-layouts: sweep/points/<id>/)
<run>/compare/              compare.{json,md,png}, points.jsonl; seeds/seed_<n>/ (a whole run per seed)
<run>/run.json, run.md, config.yaml, stage_configs/, .lock
```
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

RM_DIMENSIONS = ("helpful", "harmless")


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """Paths of one run directory. `data_dir` is the prepared-data folder (`data.output_dir` when set)."""

    root: Path
    data_dir: Path
    # The start policy: "sft" | "tiny" | a Hub id / path (see `policy_start`).
    start: str = "tiny"
    model_name_or_path: str = "tiny"
    # Judges given by path instead of trained in this run (`reward.helpful_rm_path` / `reward.harmless_rm_path`).
    judge_paths: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_config(cls, cfg) -> "RunLayout":
        """The layout of `cfg`'s run: `run.run_dir` (default `runs/<run.name>`), `data.output_dir`, the start rule."""
        run = cfg.section("run")
        root = Path(run.run_dir or os.path.join("runs", run.name))
        data = cfg.section("data")
        data_dir = Path(data.output_dir) if getattr(data, "output_dir", None) else root / "data"
        model = cfg.section("model")
        if cfg.section("sft").enabled:
            start = "sft"
        elif model.name_or_path == "tiny":
            start = "tiny"
        else:
            start = "hub"
        reward = cfg.section("reward")
        judges = tuple((dim, getattr(reward, f"{dim}_rm_path")) for dim in RM_DIMENSIONS
                       if getattr(reward, f"{dim}_rm_path", None))
        return cls(root=root, data_dir=data_dir, start=start, model_name_or_path=model.name_or_path,
                   judge_paths=judges)

    def with_data_dir(self, data_dir: str | os.PathLike | None) -> "RunLayout":
        """The same run reading its prepared data from `data_dir` (a stage's `--data-dir`); None: unchanged."""
        return self if data_dir is None else dataclasses.replace(self, data_dir=Path(data_dir))

    # ------------------------------------------------------------------ data
    def split(self, name: str) -> Path:
        """`train`, `val`, `test` (preference records) or `safety_train` etc. (single-response rows)."""
        return self.data_dir / f"{name}.jsonl"

    # ------------------------------------------------------------------ models
    def model(self, name: str) -> Path:
        return self.root / "models" / name

    @property
    def base_model(self) -> Path:
        return self.model("base")

    @property
    def sft_model(self) -> Path:
        return self.model("sft")

    def rm(self, dimension: str) -> Path:
        if dimension not in RM_DIMENSIONS:
            raise ValueError(f"dimension must be one of {RM_DIMENSIONS} (got {dimension!r})")
        return self.model(f"{dimension}_rm")

    def judge(self, dimension: str) -> str:
        """The helpful RM / cost model every stage reads: the configured path, else the one this run trains."""
        return dict(self.judge_paths).get(dimension) or str(self.rm(dimension))

    @property
    def judges_are_local(self) -> bool:
        return not self.judge_paths

    def aligned(self, algo: str | None = None) -> Path:
        """The main aligned policy (`algo` None) or an ablation's (`models/aligned_<algo>`)."""
        return self.model("aligned" if algo is None else f"aligned_{algo}")

    @property
    def distilled(self) -> Path:
        return self.model("distilled")

    # ------------------------------------------------------------------ the base-policy rule
    @property
    def policy_start(self) -> str:
        """What alignment starts from and what the report calls `base`: one rule, from the config."""
        if self.start == "sft":
            return str(self.sft_model)
        if self.start == "tiny":
            return str(self.base_model)
        return self.model_name_or_path

    @property
    def policy_start_is_local(self) -> bool:
        return self.start in ("sft", "tiny")

    # ------------------------------------------------------------------ training bookkeeping
    def checkpoints(self, stage: str) -> Path:
        return self.root / "checkpoints" / stage

    @property
    def logs(self) -> Path:
        """Every stage's TensorBoard folder and log file (the report draws its training curves from here)."""
        return self.root / "logs"

    def tensorboard(self, stage: str) -> Path:
        return self.logs / stage

    def log_file(self, stage: str) -> Path:
        return self.logs / f"{stage}.log"

    def cache(self, what: str) -> Path:
        return self.root / "cache" / what

    # ------------------------------------------------------------------ results
    @property
    def results(self) -> Path:
        return self.root / "results"

    def result(self, model_name: str) -> Path:
        return self.results / model_name

    def report(self, suffix: str = "json") -> Path:
        """The report over every evaluated model: `results/report.json` or `results/report.md`."""
        return self.results / f"report.{suffix}"

    @property
    def distill_work(self) -> Path:
        return self.root / "distill"

    @property
    def sweep(self) -> Path:
        return self.root / "sweep"

    def sweep_point(self, point_id: str, sweep_dir: Path | None = None) -> "RunLayout":
        """A sweep point's own layout (models, checkpoints, logs, results) sharing the run's data."""
        return dataclasses.replace(self, root=Path(sweep_dir or self.sweep) / "points" / point_id)

    @property
    def compare(self) -> Path:
        """`safealign compare`'s folder: its outputs (`compare_file`) and one sub-run per seed."""
        return self.root / "compare"

    def compare_file(self, suffix: str, compare_dir: Path | None = None) -> Path:
        """`compare.json`, `compare.md`, `compare.png`, or (suffix `points`) the finished (method, seed) results
        `points.jsonl`, in `compare_dir` (default `compare`)."""
        folder = Path(compare_dir or self.compare)
        return folder / ("points.jsonl" if suffix == "points" else f"compare.{suffix}")

    def compare_seed(self, seed: int) -> "RunLayout":
        """Seed `seed`'s own run (data split, base, SFT, judges, every method's model and results): a whole
        layout under `compare/seeds/seed_<n>/`, its data in its own `data/`."""
        root = self.compare / "seeds" / f"seed_{seed}"
        return dataclasses.replace(self, root=root, data_dir=root / "data")

    # ------------------------------------------------------------------ pipeline bookkeeping
    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def run_md(self) -> Path:
        return self.root / "run.md"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    def stage_config(self, stage: str) -> Path:
        return self.root / "stage_configs" / f"{stage}.yaml"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"



def results_cache(model_results_dir: str | os.PathLike) -> Path:
    """The cache folder inside one model's results folder (`<results>/<model>/cache`): its answers and judge
    verdicts, so an interrupted or repeated evaluation recomputes nothing. Results folders can live outside a
    run (`evaluate --output DIR`), so this takes the folder rather than a RunLayout."""
    return Path(model_results_dir) / "cache"


def generation_cache(model_results_dir: str | os.PathLike) -> Path:
    """The cached answers of one model to the prompts it was evaluated on."""
    return results_cache(model_results_dir) / "generation.jsonl"


def base_generation_cache(results_dir: str | os.PathLike) -> Path:
    """The base's answers a helpful-RM win rate is measured against, shared by every model of a results folder
    (keys hold the base's fingerprint: a sweep answers the base's prompts once, not once per grid point)."""
    return Path(results_dir) / ".cache" / "base_generation.jsonl"
