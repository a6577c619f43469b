"""Measure one real CLI stage from the inside: `safealign.cli.main(argv)` runs as it always does, with timers
attached to the library calls it makes. Used by gpu_recipe_dryrun.py (one process per stage on a GPU, all
stages in one process with --tiny).

What is timed (CUDA synchronised before and after each timer on a GPU):
- every `Trainer.training_step` (one micro-batch: forward + backward): seconds, non-pad tokens (the sum of the
  batch's `attention_mask`), padded tokens, sequences;
- every optimizer step (`on_step_begin` .. `on_step_end` of a callback added through
  `StageArguments.fit_to_run`, which every training stage calls): seconds; evaluation and checkpointing
  happen after `on_step_end`, so they are not in it;
- every `Trainer.evaluate`: seconds and examples;
- the precompute pass's `reference_logps` and `score_pairs` (safealign.dpo.precompute): seconds, sequences,
  tokens;
- every `from_pretrained` / `save_pretrained` of a model: seconds (loading and export);
- peak memory: on CUDA `max_memory_allocated` / `max_memory_reserved` over the stage and over its training
  loop alone; on CPU the process's peak RSS (not resettable: with --tiny, all stages share one process).

Nothing here changes what a stage computes; the probes only wrap the functions named above.
"""

from __future__ import annotations

import functools
import resource
import sys
import time
import traceback

import torch

GIB = 2**30


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _tokens(batch) -> tuple[int, int, int]:
    """(non-pad tokens, padded tokens, sequences) of a collated batch."""
    masks = [v for k, v in batch.items() if "attention_mask" in k and hasattr(v, "sum")]
    if not masks:
        ids = [v for k, v in batch.items() if "input_ids" in k and hasattr(v, "numel")]
        n = sum(int(v.numel()) for v in ids)
        return n, n, sum(int(v.shape[0]) for v in ids)
    return (sum(int(m.sum()) for m in masks), sum(int(m.numel()) for m in masks),
            sum(int(m.shape[0]) for m in masks))


def memory() -> dict:
    if torch.cuda.is_available():
        return {"kind": "cuda_max_allocated", "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
                "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 2)}
    return {"kind": "process_max_rss", "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                             * 1024 / GIB, 2)}


class Probe:
    """Timers for one stage; `record` is what the stage's JSON holds."""

    installed = None  # the probe the wrappers report to (they are installed once per process)

    def __init__(self, name: str):
        self.record = {"stage": name, "micro_steps": [], "steps": [], "evals": [], "calls": [], "train_memory": None}
        self._step_t0 = None

    def call(self, kind: str, seconds: float, **extra) -> None:
        self.record["calls"].append({"kind": kind, "s": round(seconds, 4), **extra})

    # ------------------------------------------------------------------ run one stage
    def run(self, argv: list[str]) -> dict:
        """`safealign.cli.main(argv)` under the probes; the record gets rc, wall seconds and memory."""
        from safealign.cli import main

        install()
        Probe.installed = self
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            rc = main(argv)
        except BaseException as err:  # noqa: BLE001 - a failed stage is a result of the dry run, not its end
            rc = getattr(err, "code", None) if isinstance(err, SystemExit) else 1
            self.record["error"] = "".join(traceback.format_exception(err))[-3000:]
        self.record.update(argv=argv, rc=rc, wall_s=round(time.perf_counter() - t0, 2), memory=memory())
        Probe.installed = None
        return self.record


def _timed(kind: str, count=None):
    """Wrap a function: seconds (synchronised) and `count(args, kwargs)` -> extra fields, to the probe."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            probe = Probe.installed
            extra = count(args, kwargs) if (probe and count) else {}
            _sync()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync()
            if probe:
                probe.call(kind, time.perf_counter() - t0, **extra)
            return out

        wrapper.__probed__ = True
        return wrapper

    return deco


def _count_sequences(args, kwargs) -> dict:
    seqs = args[1] if len(args) > 1 else kwargs["sequences"]
    return {"sequences": len(seqs), "tokens": sum(len(ids) for ids, _ in seqs)}


def _count_scored(args, kwargs) -> dict:
    from safealign.chat import encode_pair

    _, tok, prompts, responses = args[:4]
    n = kwargs.get("max_length", 512)
    return {"sequences": len(prompts),
            "tokens": sum(len(encode_pair(tok, p, r, n)["input_ids"]) for p, r in zip(prompts, responses))}


def install() -> None:
    """Attach the timers (once per process)."""
    import transformers
    from transformers import PreTrainedModel, Trainer, TrainerCallback

    import safealign.dpo.precompute as precompute
    import safealign.training as training

    if getattr(Trainer.training_step, "__probed__", False):
        return

    orig_step = Trainer.training_step

    @functools.wraps(orig_step)
    def training_step(self, model, inputs, *args, **kwargs):
        tokens, padded, seqs = _tokens(inputs)
        _sync()
        t0 = time.perf_counter()
        out = orig_step(self, model, inputs, *args, **kwargs)
        _sync()
        if Probe.installed:
            Probe.installed.record["micro_steps"].append({"s": round(time.perf_counter() - t0, 4), "tokens": tokens,
                                                          "padded_tokens": padded, "sequences": seqs})
        return out

    training_step.__probed__ = True
    Trainer.training_step = training_step

    orig_eval = Trainer.evaluate

    @functools.wraps(orig_eval)
    def evaluate(self, *args, **kwargs):
        _sync()
        t0 = time.perf_counter()
        out = orig_eval(self, *args, **kwargs)
        _sync()
        if Probe.installed:
            ds = kwargs.get("eval_dataset") or self.eval_dataset
            Probe.installed.record["evals"].append({"s": round(time.perf_counter() - t0, 4),
                                                    "examples": len(ds) if ds is not None else None})
        return out

    Trainer.evaluate = evaluate

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

        def on_step_begin(self, args, state, control, **kw):
            _sync()
            if Probe.installed:
                Probe.installed._step_t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync()
            probe = Probe.installed
            if probe and probe._step_t0 is not None:
                probe.record["steps"].append(round(time.perf_counter() - probe._step_t0, 4))

        def on_train_end(self, args, state, control, **kw):
            if Probe.installed:
                Probe.installed.record["train_memory"] = memory()

    orig_fit = training.StageArguments.fit_to_run

    @functools.wraps(orig_fit)
    def fit_to_run(self, *args, **kwargs):
        stage_args, callbacks = orig_fit(self, *args, **kwargs)
        return stage_args, list(callbacks) + [StepTimer()]

    training.StageArguments.fit_to_run = fit_to_run
    precompute.reference_logps = _timed("reference_logps", _count_sequences)(precompute.reference_logps)
    precompute.score_pairs = _timed("score_pairs", _count_scored)(precompute.score_pairs)

    load = PreTrainedModel.from_pretrained.__func__
    save = PreTrainedModel.save_pretrained
    PreTrainedModel.from_pretrained = classmethod(_timed("load")(load))
    PreTrainedModel.save_pretrained = _timed("save")(save)
    transformers.logging.set_verbosity_error()  # load reports of a random model's missing head are expected


if __name__ == "__main__":  # python benchmarks/dryrun_probe.py RECORD.json -- <safealign CLI args>
    import json
    from pathlib import Path

    out, sep, cli = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert sep == "--", "usage: dryrun_probe.py RECORD.json -- COMMAND ARGS..."
    rec = Probe(cli[0]).run(cli)
    Path(out).write_text(json.dumps(rec, indent=1))
    sys.exit(0 if rec["rc"] == 0 else 1)
