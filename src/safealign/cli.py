"""`safealign` command line: a thin layer over each stage's entry point.

Each subcommand loads the one YAML config (`--config`), applies `--set key=value` overrides and calls
`<module>.cli_main(cfg, args)`. Errors a user can act on (`SafeAlignError`) print one line and exit with
their code (2 for bad config or data).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .config import load_config
from .errors import SafeAlignError

# subcommand -> (entry module, config section that bare `--set key=value` refers to)
COMMANDS = {
    "prepare": ("safealign.data.prepare", "data"),
    "sft": ("safealign.sft.warmup", "sft"),
    "train-rm": ("safealign.rm.train", "reward"),
    "train-dpo": ("safealign.dpo.train", "dpo"),
    "sweep": ("safealign.sweep.run", "sweep"),
    "compare": ("safealign.compare.run", "compare"),
    "evaluate": ("safealign.evaluation.run", "eval"),
    "distill": ("safealign.distill", "distill"),
    "report": ("safealign.evaluation.report", "eval"),
    "pipeline": ("safealign.pipeline.runner", "run"),
}

HELP = {
    "prepare": "load, clean, de-duplicate and split a preference dataset; write a statistics report",
    "sft": "warm the base policy up on the more helpful answers (the optional stage before alignment)",
    "train-rm": "train the helpful reward model or the harmless cost model",
    "train-dpo": "align the policy with Safe-MM-DPO (or DPO / MM-DPO / safe DPO ablations)",
    "sweep": "grid search over lambda_init x w; pick the best config",
    "compare": "train every method on the same data and judges over N seeds; table, intervals, Pareto plot",
    "evaluate": "safety rate and MT-Bench for one or more models",
    "distill": "distil the aligned model into a small student",
    "report": "gather evaluated models into report.md / report.json with plots",
    "pipeline": "run every stage in order, resumably, in one run directory",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML config file (sections: run, data, model, reward, dpo, eval, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set dpo.beta_ori=0.2 (repeatable)")
    p.add_argument("--run-dir", help="run directory (default runs/<run.name>)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="logging level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safealign", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        p = sub.add_parser(name, help=HELP[name], description=HELP[name])
        _common(p)
        if name == "prepare":
            p.add_argument("--dataset", help="Hub dataset id, local .json/.jsonl/.parquet/.csv file or folder, or 'toy'")
            p.add_argument("--output", help="output folder (default <run-dir>/data)")
            p.add_argument("--split", help="Hub split (default train)")
            p.add_argument("--revision", help="Hub revision")
            p.add_argument("--subset", help="Hub subset / config name")
            p.add_argument("--schema", choices=["auto", "pku2023", "pku2024", "pair", "beavertails"])
            p.add_argument("--on-error", choices=["raise", "skip"])
            p.add_argument("--show", type=int, help="print N random records")
        elif name == "sft":
            p.add_argument("--output", help="model folder (default <run-dir>/models/sft)")
            p.add_argument("--resume", nargs="?", const="latest", help="resume from the latest or a given checkpoint")
        elif name == "train-rm":
            p.add_argument("--dimension", choices=["helpful", "harmless"], required=True)
            p.add_argument("--data-dir", help="prepared data folder (default <run-dir>/data)")
            p.add_argument("--output", help="model folder (default <run-dir>/models/<dimension>_rm)")
            p.add_argument("--resume", nargs="?", const="latest", help="resume from the latest or a given checkpoint")
        elif name == "train-dpo":
            p.add_argument("--data-dir", help="prepared data folder (default <run-dir>/data)")
            p.add_argument("--output", help="aligned model folder (default <run-dir>/models/aligned)")
            p.add_argument("--resume", nargs="?", const="latest", help="resume from the latest or a given checkpoint")
            p.add_argument("--stage", default="dpo", help="checkpoint/log folder name: dpo, or dpo_<algo> for an "
                                                          "ablation (default dpo)")
        elif name == "evaluate":
            p.add_argument("what", choices=["safety", "mt-bench", "all"])
            p.add_argument("--model", action="append", default=[], help="model path or Hub id (repeatable); NAME=PATH names it")
            p.add_argument("--output", help="results folder (default <run-dir>/results)")
        elif name == "report":
            p.add_argument("--results", help="results folder holding evaluated models (default <run-dir>/results)")
            p.add_argument("--output", help="where report.md/report.json go (default: the results folder)")
            p.add_argument("--models", help="comma-separated result folders to report, in this order (default: all)")
        elif name == "pipeline":
            p.add_argument("--from", dest="from_stage", help="rerun from this stage on")
            p.add_argument("--only", dest="only_stage", help="run only this stage")
        elif name == "compare":
            p.add_argument("--methods", help="comma-separated methods (default: compare.methods, all eight)")
            p.add_argument("--seeds", type=int, help="number of seeds (default compare.seeds, 5)")
            p.add_argument("--output", help="output folder (default <run-dir>/compare)")
        elif name in ("sweep", "distill"):
            p.add_argument("--output", help="output folder")
    return parser


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
        cfg = load_config(args.config, args.overrides, default_section=section)
        run = cfg.section("run")
        setup_logging(args.log_level or run.log_level)
        if args.run_dir:
            cfg = cfg.with_overrides([("run.run_dir", args.run_dir)])
        # The stage's module is imported by name only now, so `safealign --help` does not load torch.
        return int(importlib.import_module(module_name).cli_main(cfg, args) or 0)
    except SafeAlignError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
