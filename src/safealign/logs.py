"""Where log output goes while a stage runs: everything to `<run>/logs/<stage>.log`, little to the terminal.

Why: a stage used to print every library's INFO chatter (transformers' load report with raw ANSI codes,
TensorBoard's directory watcher, Trainer's metric dicts) while keeping no log file at all. Inside
`stage_logging(layout.log_file(stage))`:

- the file gets the full story as plain text: safealign at DEBUG, transformers / peft / accelerate / datasets /
  huggingface_hub at INFO, Python warnings, and the traceback of an exception that ends the stage;
- the terminal keeps progress bars (tqdm writes to it directly), the stage's one-line summary (`announce`),
  one plain line per expected-but-surprising event (`Notice`), and real warnings;
- known noise is demoted to DEBUG (file only) or rewritten, by the rules in `NOISE_RULES`, each found by
  reproducing it with transformers 5.x / tensorboard 2.x:

  | logger                      | message                                            | becomes                      |
  |-----------------------------|----------------------------------------------------|------------------------------|
  | transformers.modeling_utils | `<Cls> LOAD REPORT` with only `score.*` MISSING    | one plain notice: expected   |
  | transformers.trainer        | `missing keys ... ['lm_head.weight']` (resume)     | DEBUG: tied to the embedding |
  | tensorboard                 | `Directory watcher advancing ...`, `No path found` | DEBUG                        |
  | py.warnings (FutureWarning) | `` `gradient_checkpointing...` is deprecated ``    | DEBUG                        |

Libraries that install their own stderr handler (transformers, datasets, huggingface_hub) are routed through
ours for the duration, so nothing is printed twice; everything is restored on exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator

STAGE_LOGGER = "safealign.stage"  # `announce` lines: the one line per stage the terminal keeps
METRICS_LOGGER = "safealign.metrics"  # Trainer's per-step metric dicts (file only)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Logger -> level while a stage runs (what reaches the file). Restored on exit.
FILE_LEVELS = {"safealign": logging.DEBUG, "transformers": logging.INFO, "peft": logging.INFO,
               "accelerate": logging.INFO, "datasets": logging.INFO, "huggingface_hub": logging.INFO,
               "tensorboard": logging.INFO}
# Libraries whose own stderr handler would print a second copy of every record.
OWN_HANDLER_LIBRARIES = ("transformers", "datasets", "huggingface_hub")
_SCORE_HEAD_KEY = re.compile(r"^(score|classifier|v_head)\.(weight|bias)$")


# --------------------------------------------------------------------------- the noise rules
@dataclasses.dataclass(frozen=True)
class NoiseRule:
    """Records of `logger` (or its children) whose message matches `pattern` are passed to `rewrite`, which
    returns (new level, new message) or None to leave the record alone."""

    name: str
    logger: str
    pattern: re.Pattern
    rewrite: Callable[[logging.LogRecord, str], tuple[int, str] | None]


def _demote(record: logging.LogRecord, message: str) -> tuple[int, str]:
    return logging.DEBUG, message


def _load_report(record: logging.LogRecord, message: str) -> tuple[int, str] | None:
    """A load report whose only rows are MISSING score-head weights: a reward model's new head, expected."""
    text = ANSI.sub("", message)
    head = re.search(r"(\w+) LOAD REPORT\s*from: (\S+)", text)
    rows = re.findall(r"^\s*(\S+)\s*\|\s*(MISSING|UNEXPECTED|MISMATCH|CONVERSION)\b", text, re.M)
    if not head or not rows or any(status != "MISSING" or not _SCORE_HEAD_KEY.match(key) for key, status in rows):
        return None  # anything else in the report is a real warning: keep it (its ANSI codes are stripped)
    keys = ", ".join(key for key, _ in rows)
    return logging.INFO, (f"{head.group(1)} from {head.group(2)}: new score head ({keys}) initialised at random; "
                          "expected when a reward or cost model starts from a language model")


def _tied_lm_head(record: logging.LogRecord, message: str) -> tuple[int, str]:
    return logging.DEBUG, message + " (lm_head is tied to the input embeddings and is not saved separately: expected)"


NOISE_RULES: tuple[NoiseRule, ...] = (
    NoiseRule("load_report_new_score_head", "transformers.modeling_utils", re.compile(r"LOAD REPORT"), _load_report),
    NoiseRule("resume_tied_lm_head", "transformers.trainer",
              re.compile(r"missing keys in the checkpoint model loaded: \['lm_head\.weight'\]"), _tied_lm_head),
    NoiseRule("tensorboard_directory_watcher", "tensorboard",
              re.compile(r"^(Directory watcher advancing|No path found after)"), _demote),
    NoiseRule("gradient_checkpointing_deprecated", "py.warnings",
              re.compile(r"`gradient_checkpointing\w*` is deprecated"), _demote),
)


def _matches_logger(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


class NoiseFilter(logging.Filter):
    """Applies `NOISE_RULES` once per record (the record is shared by every handler)."""

    def __init__(self, rules: tuple[NoiseRule, ...] = NOISE_RULES):
        super().__init__()
        self.rules = rules

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_safealign_seen", False):
            return True
        record._safealign_seen = True
        message = record.getMessage()
        for rule in self.rules:
            if _matches_logger(record.name, rule.logger) and rule.pattern.search(message):
                out = rule.rewrite(record, message)
                if out is not None:
                    level, text = out
                    record.levelno, record.levelname = level, logging.getLevelName(level)
                    record.msg, record.args = text, None
                    record.noise_rule = rule.name
                    record.notice = level == logging.INFO  # rewritten to a plain line the user should see once
                break
        return True


class _ConsoleGate(logging.Filter):
    """What the terminal shows: records at `level` and above, `announce` lines, each notice once."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level
        self.notices_shown: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        if record.levelno >= self.level:
            return True
        if record.levelno >= logging.INFO and _matches_logger(record.name, STAGE_LOGGER):
            return True
        if getattr(record, "notice", False) and record.levelno >= logging.INFO:
            if record.noise_rule not in self.notices_shown:  # once per kind: a run loads several judges
                self.notices_shown.add(record.noise_rule)
                return True
        return False


class PlainFormatter(logging.Formatter):
    """No ANSI escape codes, ever (the file is read with `less`, the terminal may be a CI log)."""

    def format(self, record: logging.LogRecord) -> str:
        return ANSI.sub("", super().format(record))


class _ConsoleFormatter(PlainFormatter):
    """`warning transformers.trainer: ...` for warnings and errors; the bare message for stage lines."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"{record.levelname.lower()} {record.name}: {text}" if record.levelno >= logging.WARNING else text


# --------------------------------------------------------------------------- the context
_ACTIVE: list[logging.Handler] = []  # console handler of the outermost active context


def announce(message: str, *args) -> None:
    """The stage's one line on the terminal (and in the file)."""
    logging.getLogger(STAGE_LOGGER).info(message, *args)


def say(message: str) -> None:
    """A result line for the user on stdout (a stage's summary, the pipeline's `[i/n] stage status`), and the
    same line in the stage's log file. stdout, not the logging console: it is the command's output (tests and
    scripts read it), and a Python caller of the stage sees it without any logging set up."""
    print(message, flush=True)
    logging.getLogger(STAGE_LOGGER).info(message, extra={"file_only": True})


def _rank() -> int:
    for var in ("RANK", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _configure_libraries() -> None:
    """Let libraries that add their own handler on first use do so now, so we can route them through ours."""
    for module in ("transformers.utils.logging", "huggingface_hub.utils.logging", "datasets.utils.logging"):
        try:
            importlib.import_module(module).get_logger()
        except ImportError:
            continue


@contextlib.contextmanager
def stage_logging(log_file: str | os.PathLike | None, stage: str | None = None, console_level: str | int = "warning",
                  stream=None) -> Iterator[Path]:
    """Route logging into `log_file` (appended: a resumed stage continues its log) and a quiet terminal.

    `console_level`: the lowest level the terminal shows besides `announce` lines and notices ("warning" by
    default; "info"/"debug" for `--log-level`). `stream`: the terminal (default sys.stderr at entry).
    Ranks other than 0 of a distributed run write `<stage>.rank<k>.log` and show only errors.
    `log_file` None: the terminal part only (a command that writes outside any run directory).
    Yields the log file's path (None without one).
    """
    rank = _rank()
    path = Path(log_file) if log_file is not None else None
    if path is not None and rank:
        path = path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    level = console_level if isinstance(console_level, int) else logging.getLevelName(console_level.upper())
    if not isinstance(level, int):
        raise ValueError(f"console_level: unknown level {console_level!r}")

    noise = NoiseFilter()
    file_handler = logging.FileHandler(path, mode="a", encoding="utf-8") if path is not None else logging.NullHandler()
    file_handler.setLevel(logging.DEBUG)
    file_handler.addFilter(noise)
    file_handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))

    root = logging.getLogger()
    outermost = not _ACTIVE
    saved: list[tuple[logging.Logger, int, bool, list[logging.Handler]]] = []
    console = None
    saved_root_handlers = list(root.handlers)
    saved_capture = logging._warnings_showwarning is not None  # type: ignore[attr-defined]
    if outermost:
        _configure_libraries()
        for name in {*FILE_LEVELS, *OWN_HANDLER_LIBRARIES, "py.warnings"}:
            lg = logging.getLogger(name)
            saved.append((lg, lg.level, lg.propagate, list(lg.handlers)))
            if name in OWN_HANDLER_LIBRARIES:  # their stderr handler would print a second, unfiltered copy
                for h in list(lg.handlers):
                    if type(h) is logging.StreamHandler:
                        lg.removeHandler(h)
                lg.propagate = True
            if name in FILE_LEVELS:
                lg.setLevel(FILE_LEVELS[name])
        # A plain stderr handler set up by `logging.basicConfig` would print everything a second time.
        for h in saved_root_handlers:
            if type(h) is logging.StreamHandler:
                root.removeHandler(h)
        console = logging.StreamHandler(stream or sys.stderr)
        console.setLevel(logging.DEBUG)  # the gate decides (it must see records the noise rules demoted)
        console.addFilter(noise)
        console.addFilter(_ConsoleGate(logging.ERROR if rank else level))
        console.setFormatter(_ConsoleFormatter("%(message)s"))
        root.addHandler(console)
        _ACTIVE.append(console)
        logging.captureWarnings(True)
    root.addHandler(file_handler)
    log = logging.getLogger("safealign.logs")
    log.info("=== %s started %s (pid %d, rank %d)", stage or (path.stem if path else "safealign"),
             datetime.datetime.now().isoformat(timespec="seconds"), os.getpid(), rank)
    try:
        yield path
    except BaseException as err:
        if not isinstance(err, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            # the CLI prints the one-line error; the file keeps the traceback
            log.error("stage failed: %s", err, exc_info=True, extra={"file_only": True})
        else:
            log.info("stage interrupted (%s)", type(err).__name__)
        raise
    finally:
        log.info("=== %s ended", stage or (path.stem if path else "safealign"))
        root.removeHandler(file_handler)
        file_handler.close()
        if outermost:
            root.removeHandler(console)
            _ACTIVE.remove(console)
            root.handlers = saved_root_handlers + [h for h in root.handlers if h not in saved_root_handlers]
            for lg, lvl, prop, handlers in saved:
                lg.setLevel(lvl)
                lg.propagate = prop
                lg.handlers = handlers + [h for h in lg.handlers if h not in handlers]  # original order first
            logging.captureWarnings(saved_capture)


# --------------------------------------------------------------------------- Trainer's metric lines
def quiet_progress(trainer) -> None:
    """Keep Trainer's progress bar but send its per-step metric dicts to the log file, not the terminal."""
    from transformers.trainer_callback import ProgressCallback

    class MetricsToLog(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                logs = {k: v for k, v in logs.items() if k != "total_flos"}
                logging.getLogger(METRICS_LOGGER).info("step %d: %s", state.global_step, logs)

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(MetricsToLog())
