"""Knowledge distillation: the aligned teacher's filtered answers teach a smaller student (`safealign distill`).

Sequence-level distillation in four steps, each resumable:
1. prompts: distinct prompts of the training split, harmful and benign (`num_prompts`, `harmful_fraction`);
2. data: `samples_per_prompt` answers per prompt from the teacher (the shared generation layer, cached in
   `<run dir>/cache/distill/`), each scored by the helpful RM and the cost model, filtered
   (`safealign.distill_data`), written to `<run dir>/distill/data.jsonl` + `filter_report.{json,md}`;
3. student: a causal LM by Hub id or path, or `tiny` (a still smaller tiny model on the teacher's
   tokenizer), fine-tuned with the response-only SFT loss (`safealign.sft.run_sft`) on the kept answers;
4. efficiency of base, teacher and student on this machine (`safealign.efficiency`), and — from the command
   line — the same safety/helpfulness evaluation as the other models (`safealign.evaluation.run`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Literal

import transformers

from .errors import ConfigError, SafeAlignError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DistillConfig(transformers.TrainingArguments):
    """Section `distill`. TrainingArguments fields configure the student's fine-tuning."""

    enabled: bool = False  # the pipeline runs distillation (last, optional stage) only when true
    teacher_path: str | None = None  # default <run dir>/models/aligned
    teacher_name: str | None = None  # results folder of the teacher (default: dpo.algorithm, as the pipeline)
    # The student: a Hub id or path (TinyLlama/TinyLlama-1.1B-Chat-v1.0 in the real recipe) or `tiny`.
    student_name_or_path: str = "tiny"
    student_architecture: Literal["llama", "mistral"] = "llama"
    student_hidden_size: int = 32
    student_num_layers: int = 2
    student_num_heads: int = 4
    student_intermediate_size: int = 96
    # prompts and teacher sampling
    num_prompts: int = 2000
    harmful_fraction: float = 0.5
    samples_per_prompt: int = 4
    max_new_tokens: int = 64
    temperature: float = 0.8  # > 0 so the n answers differ (0 with samples_per_prompt 1: greedy)
    top_p: float = 0.95
    generation_batch_size: int = 32
    generation_backend: Literal["auto", "hf", "vllm"] = "auto"
    # filters
    max_cost: float = 0.0  # keep cost < max_cost
    helpful_quantile: float = 0.5  # keep helpful score >= this quantile
    helpful_scope: Literal["prompt", "global"] = "prompt"  # where the quantile is taken (see distill_data)
    helpful_rm_path: str | None = None  # default <run dir>/models/helpful_rm
    harmless_rm_path: str | None = None  # default <run dir>/models/harmless_rm
    score_max_tokens_per_batch: int = 8192
    # student training data
    max_length: int = 512
    max_prompt_length: int | None = None
    val_fraction: float = 0.05  # of the kept prompts, held out for the validation loss
    # efficiency table
    efficiency_prompts: int = 32
    efficiency_max_new_tokens: int = 32
    efficiency_batch_size: int = 8
    efficiency_repeats: int = 3
    # TrainingArguments with the student's seed defaults
    output_dir: str | None = None  # checkpoints; default <run dir>/checkpoints/distill
    learning_rate: float = 2e-4
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    num_train_epochs: float = 3.0
    warmup_steps: float = 0.03
    lr_scheduler_type: str = "cosine"
    logging_steps: float = 10
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    save_total_limit: int | None = 2
    bf16: bool | None = None  # None: on where CUDA supports it; true is dropped (with a warning) elsewhere

    def __post_init__(self):
        positive = ("num_prompts", "samples_per_prompt", "max_new_tokens", "generation_batch_size", "max_length",
                    "student_hidden_size", "student_num_layers", "student_num_heads", "student_intermediate_size",
                    "score_max_tokens_per_batch", "efficiency_prompts", "efficiency_max_new_tokens",
                    "efficiency_batch_size", "efficiency_repeats")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0 (got {getattr(self, name)})")
        for name in ("harmful_fraction", "helpful_quantile"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name}: must be in [0, 1] (got {getattr(self, name)})")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction: must be in [0, 1) (got {self.val_fraction})")
        if self.temperature < 0:
            raise ConfigError(f"temperature: must be >= 0 (got {self.temperature})")
        if self.samples_per_prompt > 1 and self.temperature == 0:
            raise ConfigError("temperature: must be > 0 when samples_per_prompt > 1 (greedy answers are identical)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1] (got {self.top_p})")
        if self.student_hidden_size % self.student_num_heads:
            raise ConfigError(f"student_hidden_size: must be divisible by student_num_heads ({self.student_num_heads})")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0 (got {self.learning_rate})")
        if self.max_prompt_length is not None and not 0 < self.max_prompt_length < self.max_length:
            raise ConfigError(f"max_prompt_length: must be in (0, max_length) (got {self.max_prompt_length})")
        from .sft import resolve_bf16

        resolve_bf16(self)
        super().__post_init__()


# --------------------------------------------------------------------------- paths
@dataclasses.dataclass
class DistillPaths:
    run_dir: Path
    teacher: Path
    helpful_rm: Path
    harmless_rm: Path
    data_dir: Path
    work: Path  # <run dir>/distill: data.jsonl, filter reports, summary
    cache: Path
    checkpoints: Path
    logs: Path
    results: Path
    output: Path


def resolve_paths(cfg, output_dir: str | Path | None = None) -> DistillPaths:
    run = cfg.section("run")
    d = cfg.section("distill")
    rd = run.directory
    data_cfg = cfg.section("data")
    data_dir = Path(data_cfg.output_dir) if getattr(data_cfg, "output_dir", None) else rd / "data"
    ckpt = d.output_dir if d.output_dir not in (None, "trainer_output") else rd / "checkpoints" / "distill"
    return DistillPaths(
        run_dir=rd, teacher=Path(d.teacher_path or rd / "models" / "aligned"),
        helpful_rm=Path(d.helpful_rm_path or rd / "models" / "helpful_rm"),
        harmless_rm=Path(d.harmless_rm_path or rd / "models" / "harmless_rm"),
        data_dir=data_dir, work=rd / "distill", cache=rd / "cache" / "distill", checkpoints=Path(ckpt),
        logs=rd / "logs" / "distill", results=rd / "results", output=Path(output_dir or rd / "models" / "distilled"))


def _require(path: Path, what: str, hint: str) -> None:
    if not (path / "config.json").is_file():
        raise SafeAlignError(f"{path}: {what} not found; {hint}")


# --------------------------------------------------------------------------- step 2: the data
def build_distill_data(cfg, paths: DistillPaths) -> tuple[list[dict], dict]:
    """Sample, generate, score and filter; write data.jsonl and the filter report. Returns (samples, report)."""
    from . import generation
    from .distill_data import apply_filters, filter_report_markdown, sample_prompts
    from .fileio import read_jsonl, write_json, write_jsonl, write_text
    from .rm.scoring import load_scorer, score_pairs

    d = cfg.section("distill")
    seed = d.seed
    train_file = paths.data_dir / "train.jsonl"
    if not train_file.is_file():
        raise SafeAlignError(f"{train_file}: not found; run `safealign prepare` first")
    prompts = sample_prompts(read_jsonl(train_file), d.num_prompts, d.harmful_fraction, seed, str(train_file))
    texts = [p["prompt"] for p in prompts]
    log.info("distill: %d prompts (%d harmful) x %d teacher samples", len(prompts),
             sum(p["is_harmful_prompt"] for p in prompts), d.samples_per_prompt)

    samples: list[dict] = []
    for k in range(d.samples_per_prompt):
        answers = generation.generate(
            str(paths.teacher), texts, max_new_tokens=d.max_new_tokens, temperature=d.temperature, top_p=d.top_p,
            seed=seed + 1000 * k, batch_size=d.generation_batch_size, backend=d.generation_backend,
            cache_path=paths.cache / "teacher_samples.jsonl",
            desc=f"teacher answers {k + 1}/{d.samples_per_prompt}")
        for p, answer in zip(prompts, answers):
            samples.append({"prompt": p["prompt"], "response": answer, "sample": k,
                            "is_harmful_prompt": p["is_harmful_prompt"]})
    generation.release()

    for field, path in (("helpful_score", paths.helpful_rm), ("cost", paths.harmless_rm)):
        model, tok = load_scorer(path)
        scores = score_pairs(model, tok, [s["prompt"] for s in samples], [s["response"] for s in samples],
                             max_length=d.max_length, max_tokens_per_batch=d.score_max_tokens_per_batch,
                             desc=f"scoring ({field})")
        for s, v in zip(samples, scores):
            s[field] = float(v)
        del model
        generation.release()  # gc + free CUDA memory before the next model loads

    report = apply_filters(samples, d.max_cost, d.helpful_quantile, d.helpful_scope)
    report["teacher"] = str(paths.teacher)
    report["samples_per_prompt"] = d.samples_per_prompt
    report["temperature"] = d.temperature
    write_jsonl(paths.work / "data.jsonl", samples)
    write_json(paths.work / "filter_report.json", report)
    write_text(paths.work / "filter_report.md", filter_report_markdown(report))
    log.info("distill: kept %d of %d teacher answers", report["all"]["kept"], report["all"]["samples"])
    return samples, report


# --------------------------------------------------------------------------- step 3: the student
def build_student(cfg, paths: DistillPaths) -> str:
    """The student's starting point: a Hub id / path as given, or the tiny student built once (seeded)."""
    d = cfg.section("distill")
    if d.student_name_or_path != "tiny":
        return d.student_name_or_path
    init = paths.checkpoints / "student_init"
    if (init / "config.json").is_file():
        return str(init)
    from .fileio import atomic_path
    from .models.loading import load_tokenizer
    from .models.tiny import build_tiny_model

    tok = load_tokenizer(str(paths.teacher))
    teacher_cfg = transformers.AutoConfig.from_pretrained(str(paths.teacher))
    model = build_tiny_model(tok, architecture=d.student_architecture, hidden_size=d.student_hidden_size,
                             num_layers=d.student_num_layers, num_heads=d.student_num_heads,
                             intermediate_size=d.student_intermediate_size,
                             max_position_embeddings=getattr(teacher_cfg, "max_position_embeddings", 512),
                             seed=d.seed)
    with atomic_path(init) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return str(init)


def train_student(cfg, paths: DistillPaths, samples: list[dict], resume=None) -> dict:
    from .distill_data import split_by_prompt
    from .sft import run_sft

    d = cfg.section("distill")
    kept = [s for s in samples if s["kept"]]
    if not kept:
        raise SafeAlignError(f"{paths.work / 'filter_report.md'}: no teacher answer passed the filters; "
                             "loosen distill.max_cost / distill.helpful_quantile")
    train, val = split_by_prompt(kept, d.val_fraction, d.seed)
    student = build_student(cfg, paths)
    args = dataclasses.replace(d, output_dir=str(paths.checkpoints))
    transformers.set_seed(d.seed)
    model_cfg = None if d.student_name_or_path == "tiny" else _student_model_cfg(cfg)
    return run_sft(train, val, student, paths.output, args, model_cfg=model_cfg, resume=resume,
                   logging_dir=paths.logs, max_length=d.max_length, max_prompt_length=d.max_prompt_length,
                   report_to=cfg.section("run").report_to, config_to_save=cfg)


def _student_model_cfg(cfg):
    # A Hub student is fully fine-tuned (no LoRA), with the policy's loading options (trust_remote_code).
    return dataclasses.replace(cfg.section("model"), use_lora=False, load_in_4bit=False)


# --------------------------------------------------------------------------- step 4: how it compares
def base_policy_path(cfg) -> str:
    """The starting policy the report calls `base`: the SFT warm-up when enabled, else the base model."""
    from .models.base import base_model_path

    warm = cfg.section("run").directory / "models" / "sft"
    if cfg.section("sft").enabled and (warm / "config.json").is_file():
        return str(warm)
    return base_model_path(cfg)


def teacher_name(cfg) -> str:
    d = cfg.section("distill")
    if d.teacher_name:
        return d.teacher_name
    try:
        return str(getattr(cfg.section("dpo"), "algorithm", "aligned"))
    except (ImportError, ConfigError):
        return "aligned"


def measure(cfg, paths: DistillPaths) -> dict:
    """Efficiency of base, teacher and student on held-out prompts of the test split."""
    from .distill_data import sample_prompts
    from .efficiency import measure_models
    from .fileio import read_jsonl

    d = cfg.section("distill")
    source = paths.data_dir / "test.jsonl"
    if not source.is_file():
        source = paths.data_dir / "train.jsonl"
    prompts = [p["prompt"] for p in sample_prompts(read_jsonl(source), d.efficiency_prompts, 0.5, d.seed, str(source))]
    models = {"base": base_policy_path(cfg), teacher_name(cfg): str(paths.teacher), "distilled": str(paths.output)}
    # a local folder must hold a model; anything else that is not a path is a Hub id (the real recipe's base)
    models = {k: v for k, v in models.items() if (Path(v) / "config.json").is_file() or not Path(v).exists()
              and not Path(v).is_absolute() and v.count("/") == 1}
    return measure_models(models, prompts, paths.results, max_new_tokens=d.efficiency_max_new_tokens,
                          batch_size=d.efficiency_batch_size, repeats=d.efficiency_repeats)


def evaluate_student(cfg, paths: DistillPaths) -> dict | None:
    """The same safety/helpfulness evaluation for the student, and for base and teacher where their results
    are missing (so `results/` holds all three side by side). Returns {name: safety rate, helpfulness}."""
    from .evaluation.run import evaluate_model

    try:
        what = cfg.section("pipeline").evaluate
    except (ConfigError, ImportError, AttributeError):
        what = "safety"
    todo = {"distilled": str(paths.output)}
    for name, path in (("base", base_policy_path(cfg)), (teacher_name(cfg), str(paths.teacher))):
        if not (paths.results / name / "safety.json").is_file():
            todo[name] = path
    out = {}
    for name, path in todo.items():
        result = evaluate_model(cfg, name, path, what, str(paths.results))
        out[name] = {"safety_rate": (result.get("safety") or {}).get("safety_rate"),
                     "helpfulness": (result.get("helpfulness") or {}).get("helpfulness")}
    return out


# --------------------------------------------------------------------------- entry points
def run_distill(cfg, output_dir: str | Path | None = None, resume=None, evaluate: bool = False) -> dict:
    """Distil the aligned teacher into the student at `output_dir` (default `<run dir>/models/distilled`).

    Inside the pipeline the student is evaluated by its own `evaluate_distilled` stage; `evaluate=True`
    (the `safealign distill` command) evaluates it here. Returns a summary (also `<run dir>/distill/summary.json`).
    """
    from .fileio import write_json

    paths = resolve_paths(cfg, output_dir)
    _require(paths.teacher, "teacher model", "train it with `safealign train-dpo` or set distill.teacher_path")
    _require(paths.helpful_rm, "helpful reward model", "train it with `safealign train-rm --dimension helpful`")
    _require(paths.harmless_rm, "cost model", "train it with `safealign train-rm --dimension harmless`")
    samples, report = build_distill_data(cfg, paths)
    train_metrics = train_student(cfg, paths, samples, resume=resume)
    efficiency = measure(cfg, paths)
    summary = {
        "teacher": str(paths.teacher), "student": str(paths.output),
        "filter": {k: report[k] for k in ("filters", "all", "harmful_prompts", "benign_prompts")},
        "train": {k: v for k, v in train_metrics.items() if k != "log_history"},
        "efficiency": efficiency,
        "efficiency_table": str(paths.results / "efficiency.md"),
    }
    if evaluate:
        summary["evaluation"] = evaluate_student(cfg, paths)
    write_json(paths.work / "summary.json", summary)
    return summary


def cli_main(cfg, args) -> int:
    summary = run_distill(cfg, output_dir=getattr(args, "output", None), evaluate=True)
    t = summary["train"]
    f = summary["filter"]["all"]
    print(f"distill: kept {f['kept']}/{f['samples']} teacher answers; student val loss "
          f"{t.get('initial_val_loss'):.4f} -> {t.get('val_loss'):.4f}; saved {summary['student']}")
    for name, r in (summary.get("evaluation") or {}).items():
        print(f"  {name}: safety rate {r['safety_rate']}, helpfulness {r['helpfulness']}")
    print(Path(summary["efficiency_table"]).read_text(encoding="utf-8"))
    return 0
