"""What a training stage leaves behind besides its model: the terminal (progress bars, one summary line, real
warnings; no metric dicts, no load report, no ANSI-coloured tables), its plain-text log file, a quiet resume of
a model with tied embeddings, and W&B's offline run when `run.report_to: [wandb]`."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safealign.cli import main

REPO = Path(__file__).resolve().parents[1]
CI = REPO / "configs" / "ci_small.yaml"
# A user's terminal: whatever switched progress bars off in this process (TQDM_DISABLE) is not passed on.
ENV = {**{k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}, "PYTHONPATH": str(REPO / "src"),
       "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("stage_output") / "run"
    assert main(["prepare", "--config", str(CI), "--run-dir", str(run), "--set", "toy.num_pairs=80",
                 "--show", "0"]) == 0
    return run


def _safealign(*args, env=None):
    return subprocess.run([sys.executable, "-m", "safealign.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env or ENV, cwd=REPO)


@pytest.mark.slow
def test_terminal_keeps_bars_and_one_line_the_log_file_keeps_everything(prepared):
    proc = _safealign("train-rm", "--config", CI, "--run-dir", prepared, "--dimension", "harmless",
                      "--set", "reward.logging_steps=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out, err = proc.stdout, proc.stderr
    assert out.strip().splitlines() == [next(line for line in out.splitlines() if line.startswith("harmless RM: "))]
    assert "{'loss'" not in err and "'eval_loss'" not in err  # Trainer's metric dicts: file only
    assert "LOAD REPORT" not in err and "MISSING" not in err and "\x1b[1m" not in err  # no coloured table
    notice = "LlamaForSequenceClassification from "
    assert sum(notice in line and "new score head (score.weight) initialised at random; expected" in line
               for line in err.splitlines()) == 1
    assert "it/s]" in err or "s/it]" in err  # Trainer's progress bar
    log = (prepared / "logs" / "harmless_rm.log").read_text()
    assert "=== harmless_rm started" in log and "=== harmless_rm ended" in log and "\x1b[" not in log
    assert "safealign.metrics: step 1: {'loss':" in log and "harmless RM: val accuracy" in log
    assert "safealign.threads: threads: 1 (torch intra-op 1" in log


def test_resume_of_a_model_with_tied_embeddings_is_quiet(tmp_path, tiny_base, caplog):
    """The output embedding is tied to the input embedding and not saved twice: resuming re-ties it instead of
    warning that `lm_head.weight` is missing (transformers' own method does warn: checked first)."""
    import transformers

    from safealign.sft import EncodedDataset, ResponseOnlyCollator
    from safealign.sft.train import load_trainable
    from safealign.training import AtomicCheckpointMixin, CheckpointedTrainer, StageArguments

    examples = [{"prompt": f"Question {i}?", "response": f"Answer {i}."} for i in range(8)]

    def trainer(max_steps: int):
        model, tok = load_trainable(str(tiny_base))
        args = StageArguments(output_dir=str(tmp_path / "ckpt"), max_steps=max_steps, save_steps=2, logging_steps=1,
                              per_device_train_batch_size=4, report_to="none", use_cpu=True, disable_tqdm=True)
        return CheckpointedTrainer(model=model, args=args, train_dataset=EncodedDataset(examples, tok, 64),
                                   data_collator=ResponseOnlyCollator(tok.pad_token_id))

    trainer(2).train()
    assert (tmp_path / "ckpt" / "checkpoint-2").is_dir()
    caplog.set_level(logging.WARNING)

    def missing_key_warnings():
        return [r for r in caplog.records if "missing keys" in r.getMessage() and "lm_head.weight" in r.getMessage()]

    plain = trainer(3)  # transformers' own handling, for contrast
    plain._issue_warnings_after_load = lambda result: transformers.Trainer._issue_warnings_after_load(plain, result)
    plain.train(resume_from_checkpoint="latest")
    assert missing_key_warnings(), "transformers no longer warns: the re-tie may be unnecessary"
    caplog.clear()
    ours = trainer(4)
    assert type(ours)._issue_warnings_after_load is AtomicCheckpointMixin._issue_warnings_after_load
    ours.train(resume_from_checkpoint="latest")
    assert not missing_key_warnings() and ours.state.global_step == 4
    model = ours.model
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied, not just quiet


@pytest.mark.slow
def test_wandb_reporter_writes_an_offline_run(prepared, tmp_path):
    """`run.report_to: [wandb]` (documented in docs/pipeline.md): with WANDB_MODE=offline the stage's metrics go
    to a local W&B run folder (synced later with `wandb sync`)."""
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install safealign[wandb])")
    env = {**ENV, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_PROJECT": "safealign-test",
           "WANDB_SILENT": "true"}
    proc = _safealign("train-rm", "--config", CI, "--run-dir", prepared, "--dimension", "helpful",
                      "--set", "run.report_to=[wandb]", "--set", "reward.logging_steps=1", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = b"".join(f.read_bytes() for f in runs[0].glob("run-*.wandb"))  # protobuf records, uncompressed
    for expected in (b"train/loss", b"eval/accuracy", b"ci_small-helpful_rm", b"safealign-test"):
        assert expected in records, expected  # the metrics, the run's name (<run.name>-<stage>), the project
    assert not list((prepared / "logs" / "helpful_rm").rglob("events.out.tfevents*"))  # wandb only, as asked
