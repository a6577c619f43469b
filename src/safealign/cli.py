"""`safealign` command line: a thin layer over each stage's entry point.

Each subcommand loads the one YAML config (`--config`), applies `--set key=value` overrides and calls
`<module>.cli_main(cfg, args)`. Errors a user can act on (`SafeAlignError`) print one line and exit with
their code (2 for bad config or data).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__, interact
from .config import load_config
from .errors import SafeAlignError
from .layout import RunLayout
from .logs import stage_logging
from .threads import apply_num_threads, threads_for_this_process
from .threads import describe as describe_threads

DESCRIPTION = ("safealign: align a causal language model with Safe-MM-DPO, from preference data to an "
               "evaluated, distilled model and a report. Each command runs one stage; pipeline runs them all, "
               "resumably, in one run directory. Settings come from one YAML file (--config) and --set.")

# subcommand -> (entry module, config section that a bare `--set key=value` refers to, one-line help)
_SUBCOMMANDS = {
    "prepare": ("safealign.data.prepare", "data",
                "load, clean, de-duplicate and split a preference dataset; write a statistics report"),
    "sft": ("safealign.sft.warmup", "sft",
            "warm the base policy up on the more helpful answers (the optional stage before alignment)"),
    "train-rm": ("safealign.rm.train", "reward",
                 "train the helpful reward model or the harmless cost model"),
    "train-dpo": ("safealign.dpo.train", "dpo",
                  "align the policy with Safe-MM-DPO (or DPO / MM-DPO / safe DPO ablations)"),
    "sweep": ("safealign.sweep.run", "sweep",
              "grid search over lambda_init x w; pick the best config"),
    "compare": ("safealign.compare.run", "compare",
                "train every method on the same data and judges over N seeds; table, intervals, Pareto plot"),
    "evaluate": ("safealign.evaluation.run", "eval",
                 "safety rate and MT-Bench for one or more models"),
    "distill": ("safealign.distill", "distill",
                "distil the aligned model into a small student"),
    "report": ("safealign.evaluation.report", "eval",
               "gather evaluated models into report.md / report.json with plots"),
    "pipeline": ("safealign.pipeline.runner", "run",
                 "run every stage in order, resumably, in one run directory"),
    "chat": ("safealign.interact", "model",
             "talk to a trained model (same chat template as training)"),
    "generate": ("safealign.interact", "model",
                 "answer a file of prompts (JSONL out)"),
}
COMMANDS = {name: (module, section) for name, (module, section, _) in _SUBCOMMANDS.items()}
HELP = {name: text for name, (_, _, text) in _SUBCOMMANDS.items()}

# One `--set` example per command, in the command's own section (a bare key means that section).
SET_EXAMPLES = {
    "prepare": "--set data.max_tokens=512 (or bare: --set max_tokens=512)",
    "sft": "--set sft.learning_rate=1e-5 (or bare: --set learning_rate=1e-5)",
    "train-rm": "--set reward.num_train_epochs=2 (or bare: --set num_train_epochs=2)",
    "train-dpo": "--set dpo.beta_ori=0.2 (or bare: --set beta_ori=0.2)",
    "sweep": "--set sweep.w=[0.3,0.5] (or bare: --set w=[0.3,0.5])",
    "compare": "--set compare.seeds=3 (or bare: --set seeds=3)",
    "evaluate": "--set eval.max_new_tokens=128 (or bare: --set max_new_tokens=128)",
    "distill": "--set distill.num_prompts=500 (or bare: --set num_prompts=500)",
    "report": "--set run.name=demo (the report reads <run-dir>/results)",
    "pipeline": "--set dpo.beta_ori=0.2 (a bare key means the run section: --set num_threads=2)",
}

# `pipeline --help` lists the stages (kept equal to pipeline.plan.build_plan by tests/test_cli.py).
PIPELINE_STAGES = ("prepare, base (the tiny model, when model.name_or_path is tiny), sft (when sft.enabled), "
                   "helpful_rm, harmless_rm, dpo, dpo_<algo> (one per pipeline.ablations), evaluate_base, "
                   "evaluate_<algo> (each aligned model), distill and evaluate_distilled (when distill.enabled), "
                   "report")
NO_RUN_DIR = ("chat", "generate")  # talk to a model: no config sections, no run directory, no log file


def _common(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--config", "-c", help="YAML config file (sections: run, data, model, reward, dpo, eval, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a setting, e.g. {SET_EXAMPLES[name]}; repeatable")
    p.add_argument("--run-dir", help="run directory (default runs/<run.name>)")
    _log_level(p)


def _log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="what the terminal shows (default run.log_level: warning); the log file "
                        "<run-dir>/logs/<stage>.log always gets everything")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safealign", description=DESCRIPTION)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        epilog = f"stages, in order: {PIPELINE_STAGES}" if name == "pipeline" else None
        p = sub.add_parser(name, help=HELP[name], description=HELP[name], epilog=epilog)
        if name in NO_RUN_DIR:
            _log_level(p)
        else:
            _common(p, name)
        if name == "prepare":
            p.add_argument("--dataset", help="Hub dataset id, local .json/.jsonl/.parquet/.csv file or folder, or 'toy'")
            p.add_argument("--output", help="output folder (default <run-dir>/data)")
            p.add_argument("--split", help="Hub split (default train)")
            p.add_argument("--revision", help="Hub revision")
            p.add_argument("--subset", help="Hub subset / config name")
            p.add_argument("--schema", choices=["auto", "pku2023", "pku2024", "pair", "beavertails"],
                           help="the dataset's column layout (default auto: detected from the columns)")
            p.add_argument("--on-error", choices=["raise", "skip"],
                           help="a malformed row stops the run (raise, default) or is dropped and counted (skip)")
            p.add_argument("--show", type=int, metavar="N", help="print N random prepared records (default 3)")
        elif name == "sft":
            p.add_argument("--output", help="model folder (default <run-dir>/models/sft)")
            p.add_argument("--resume", nargs="?", const="latest", help="resume from the latest or a given checkpoint")
        elif name == "train-rm":
            p.add_argument("--dimension", choices=["helpful", "harmless"], required=True,
                           help="helpful: the reward model (higher = more helpful); harmless: the cost model "
                                "(cost > 0 = unsafe)")
            p.add_argument("--data-dir", help="prepared data folder (default <run-dir>/data)")
            p.add_argument("--output", help="model folder (default <run-dir>/models/<dimension>_rm)")
            p.add_argument("--resume", nargs="?", const="latest", help="resume from the latest or a given checkpoint")
        elif name == "train-dpo":
            p.add_argument("--data-dir", help="prepared data folder (default <run-dir>/data)")
            p.add_argument("--output", help="aligned model folder (default <run-dir>/models/aligned)")
            p.add_argument("--resume", nargs="?", const="latest", help="resume from the latest or a given checkpoint")
            p.add_argument("--stage", default="dpo", help="checkpoint/log folder name: dpo, or dpo_<algo> for an "
                                                          "ablation (default dpo)")
            _push(p)
        elif name == "evaluate":
            p.add_argument("what", choices=["safety", "mt-bench", "all", "judge", "mt-bench-results"],
                           help="safety: safety rate (and helpfulness); mt-bench: MT-Bench with an LLM judge; "
                                "all: both (MT-Bench when eval.mt_bench_questions is set); judge: a judge's "
                                "agreement with labelled responses; mt-bench-results: scores from FastChat "
                                "judgment files")
            p.add_argument("--model", action="append", default=[],
                           help="model folder or Hub id (repeatable); NAME=PATH names it in the results "
                                "(default: the run's base policy, named base)")
            p.add_argument("--output", "--out", help="results folder (default <run-dir>/results)")
            # `evaluate judge` (evaluation/agreement.py) and `evaluate mt-bench-results` (mt_bench_results.py)
            p.add_argument("--responses", help="judge: labelled rows (.jsonl/.json/.csv/.parquet)")
            p.add_argument("--judge", help="judge: refusal, cost-model, moderation-model, llm, toy or field:COLUMN")
            p.add_argument("--unsafe-field", help="judge: boolean column, true = unsafe (the reference label)")
            p.add_argument("--prompt-field", default="prompt", help="judge: prompt column (default prompt)")
            p.add_argument("--response-field", default="response", help="judge: response column (default response)")
            p.add_argument("--category-field", default="category", help="judge: category column (default category)")
            p.add_argument("--judgments", help="mt-bench-results: FastChat model_judgment/*.jsonl file or data folder")
            p.add_argument("--questions", help="mt-bench-results: question.jsonl (for per-category scores)")
        elif name == "report":
            p.add_argument("--results", help="results folder holding evaluated models (default <run-dir>/results)")
            p.add_argument("--output", help="where report.md/report.json go (default: the results folder)")
            p.add_argument("--models", help="comma-separated result folders to report, in this order (default: all)")
        elif name == "pipeline":
            p.add_argument("--from", dest="from_stage", help="rerun from this stage on")
            p.add_argument("--only", dest="only_stage", help="run only this stage (a prefix such as evaluate names "
                                                            "every evaluate_* stage)")
            _push(p)
        elif name == "sweep":
            p.add_argument("--output", help="sweep folder (default <run-dir>/sweep)")
        elif name == "distill":
            p.add_argument("--output", help="student model folder (default <run-dir>/models/distilled)")
            _push(p)
        elif name == "compare":
            p.add_argument("--methods", help="comma-separated methods (default: compare.methods, all eight)")
            p.add_argument("--seeds", type=int, help="number of seeds (default compare.seeds, 5)")
            p.add_argument("--output", help="output folder (default <run-dir>/compare)")
        elif name == "chat":
            interact.add_chat_arguments(p)
        elif name == "generate":
            interact.add_generate_arguments(p)
    return parser


def _push(p: argparse.ArgumentParser) -> None:
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the exported model folder (weights, tokenizer, "
                                                         "model card) to this Hugging Face repo (owner/name); "
                                                         "the token comes from HF_TOKEN")


def stage_name(args) -> str:
    """The log file's name (<run>/logs/<stage>.log): the pipeline's name for the stage a command runs."""
    if args.command == "train-rm":
        return f"{args.dimension}_rm"
    if args.command == "train-dpo":
        return args.stage or "dpo"
    return args.command


def _log_file(args, cfg):
    """`<run>/logs/<stage>.log`, or None (terminal only) for a command that writes outside any run directory:
    `--output` given, no run directory named and none there yet (e.g. `prepare --output data/`)."""
    layout = RunLayout.from_config(cfg)
    named = args.run_dir or cfg.section("run").run_dir
    if getattr(args, "output", None) and not named and not layout.root.is_dir():
        return None
    return layout.log_file(stage_name(args))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        module_name, section = COMMANDS[args.command]
        cfg = load_config(getattr(args, "config", None), getattr(args, "overrides", []), default_section=section)
        if getattr(args, "run_dir", None):
            cfg = cfg.with_overrides([("run.run_dir", args.run_dir)])
        run = cfg.section("run")
        # Before the stage's module is imported: torch's inter-op pool can be sized only before its first use.
        apply_num_threads(threads_for_this_process(run.num_threads))
        # The stage's module is imported by name only now, so `safealign --help` does not load torch.
        module = importlib.import_module(module_name)
        if hasattr(module, "check_args"):  # errors found before anything is written (not even a log file)
            module.check_args(cfg, args)
        log_file = None if args.command in NO_RUN_DIR else _log_file(args, cfg)
        with stage_logging(log_file, stage_name(args), console_level=args.log_level or run.log_level):
            logging.getLogger("safealign.threads").info(describe_threads())
            return int(module.cli_main(cfg, args) or 0)
    except SafeAlignError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
