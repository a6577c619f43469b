"""`stage_logging`: the full log goes to <run>/logs/<stage>.log as plain text; the terminal keeps real warnings,
announce lines and one plain notice; each known noise source is reproduced for real and checked silenced."""

import io
import logging
import warnings

import pytest

from safealign.logs import announce, quiet_progress, stage_logging


def _lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


@pytest.fixture
def term():
    return io.StringIO()


def test_new_score_head_report_becomes_one_plain_notice(tmp_path, tiny_base, term):
    from safealign.models.loading import load_score_model

    log_file = tmp_path / "logs" / "helpful_rm.log"
    with stage_logging(log_file, "helpful_rm", stream=term):
        load_score_model(str(tiny_base), dtype="float32")
        load_score_model(str(tiny_base), dtype="float32")  # the second judge of a run: said once only
    out, text = term.getvalue(), log_file.read_text()
    assert "LOAD REPORT" not in out and "MISSING" not in out and "\x1b" not in out
    notice = _lines(out, "new score head (score.weight) initialised at random; expected")
    assert len(notice) == 1 and "LlamaForSequenceClassification" in notice[0]
    assert len(_lines(text, "new score head (score.weight)")) == 2 and "\x1b" not in text
    assert "INFO    transformers." in text  # the libraries' INFO lines are in the file


def test_other_load_report_rows_stay_a_warning(tmp_path, tiny_base, term):
    from transformers import AutoModelForCausalLM

    from safealign.models.loading import load_score_model

    rm = tmp_path / "rm"
    load_score_model(str(tiny_base), dtype="float32").save_pretrained(rm)
    with stage_logging(tmp_path / "x.log", stream=term):
        AutoModelForCausalLM.from_pretrained(rm)  # score.weight UNEXPECTED: not the expected case
    out = term.getvalue()
    assert "warning transformers.modeling_utils:" in out and "score.weight" in out and "UNEXPECTED" in out
    assert "\x1b" not in out


def test_resume_with_tied_embeddings_and_metric_dicts_stay_in_the_file(tmp_path, tiny_base, term, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(tiny_base)
    ids = tok(["how do I bake bread then flour"] * 4)["input_ids"]
    data = [{"input_ids": torch.tensor(x), "labels": torch.tensor(x)} for x in ids]
    model = AutoModelForCausalLM.from_pretrained(tiny_base)

    def trainer(steps):
        args = TrainingArguments(output_dir=str(tmp_path / "ck"), max_steps=steps, save_steps=1, logging_steps=1,
                                 per_device_train_batch_size=2, report_to="none", use_cpu=True, disable_tqdm=False)
        t = Trainer(model=model, args=args, train_dataset=data)
        quiet_progress(t)
        return t

    log_file = tmp_path / "logs" / "sft.log"
    with stage_logging(log_file, "sft", stream=term):
        trainer(1).train()
        trainer(2).train(resume_from_checkpoint=True)
    out, text = term.getvalue(), log_file.read_text()
    captured = capsys.readouterr()
    assert "missing keys" not in out
    [line] = _lines(text, "missing keys in the checkpoint model loaded: ['lm_head.weight']")
    assert line.split()[2] == "DEBUG" and "tied to the input embeddings" in line and line.endswith("expected)")
    assert "'loss'" not in captured.out + captured.err + out  # no metric dicts on the terminal
    assert _lines(text, "safealign.metrics: step 2: {'loss'")


def test_tensorboard_directory_watcher_is_silenced(tmp_path, term):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    events = tmp_path / "tb"
    for start in (0, 5):  # a resumed stage writes a second event file into the same folder
        with SummaryWriter(str(events), filename_suffix=f".{start}") as w:
            for step in range(start, start + 5):
                w.add_scalar("train/loss", 1.0 / (step + 1), step)
    log_file = tmp_path / "report.log"
    with stage_logging(log_file, stream=term, console_level="info"):  # even at --log-level info
        acc = EventAccumulator(str(events))
        acc.Reload()
    assert len(acc.Scalars("train/loss")) == 10
    assert "Directory watcher" not in term.getvalue()
    assert all(" DEBUG " in line for line in _lines(log_file.read_text(), "Directory watcher advancing"))
    assert _lines(log_file.read_text(), "Directory watcher advancing")


def test_gradient_checkpointing_deprecation_is_silenced_but_real_warnings_show(tmp_path, term):
    from transformers import TrainingArguments

    log_file = tmp_path / "dpo.log"
    with stage_logging(log_file, stream=term):
        warnings.simplefilter("always")
        TrainingArguments(output_dir=str(tmp_path / "o"), gradient_checkpointing=True, report_to="none")
        warnings.warn("the cost model saw no unsafe answer", UserWarning)
    out, text = term.getvalue(), log_file.read_text()
    assert "gradient_checkpointing" not in out
    assert _lines(text, "`gradient_checkpointing` is deprecated") and " DEBUG " in _lines(text, "deprecated")[0]
    assert len(_lines(out, "UserWarning: the cost model saw no unsafe answer")) == 1


def test_terminal_shows_stage_line_and_warnings_once_and_restores(tmp_path, term):
    import transformers.utils.logging as hf_logging

    root = logging.getLogger()
    root_before = list(root.handlers)
    basic = logging.StreamHandler(io.StringIO())  # what logging.basicConfig would have installed
    root.addHandler(basic)
    tf = logging.getLogger("transformers")
    before = (list(tf.handlers), tf.propagate, tf.level)
    try:
        log_file = tmp_path / "logs" / "prepare.log"
        with stage_logging(log_file, "prepare", stream=term):
            log = logging.getLogger("safealign.data.prepare")
            log.debug("row 17 kept")
            log.info("wrote train.jsonl")
            log.warning("12 rows dropped (empty response)")
            hf_logging.get_logger("transformers.tokenization_utils_base").warning("a real transformers warning")
            announce("prepare: 400 records -> train 320 / val 40 / test 40")
        assert basic in root.handlers  # given back on exit
    finally:
        root.removeHandler(basic)
    out, text = term.getvalue(), log_file.read_text()
    assert out.splitlines() == ["warning safealign.data.prepare: 12 rows dropped (empty response)",
                                "warning transformers.tokenization_utils_base: a real transformers warning",
                                "prepare: 400 records -> train 320 / val 40 / test 40"]
    assert basic.stream.getvalue() == ""  # no second copy through basicConfig's handler
    for needle in ("DEBUG   safealign.data.prepare: row 17 kept", "INFO    safealign.data.prepare: wrote train.jsonl",
                   "=== prepare started", "=== prepare ended"):
        assert _lines(text, needle), needle
    assert (list(tf.handlers), tf.propagate, tf.level) == before
    assert root.handlers == root_before


def test_an_exception_leaves_its_traceback_in_the_file_only(tmp_path, term):
    log_file = tmp_path / "distill.log"
    with pytest.raises(ValueError):
        with stage_logging(log_file, stream=term):
            raise ValueError("teacher answers are empty")
    assert term.getvalue() == ""
    text = log_file.read_text()
    assert "ERROR   safealign.logs: stage failed: teacher answers are empty" in text and "Traceback" in text


def test_the_log_is_appended_on_resume(tmp_path, term):
    log_file = tmp_path / "dpo.log"
    for _ in range(2):
        with stage_logging(log_file, "dpo", stream=term):
            pass
    assert len(_lines(log_file.read_text(), "=== dpo started")) == 2


def test_other_ranks_write_their_own_file(tmp_path, term, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with stage_logging(tmp_path / "dpo.log", stream=term) as path:
        logging.getLogger("safealign.dpo").warning("rank 1 only")
    assert path.name == "dpo.rank1.log" and "rank 1 only" in path.read_text() and term.getvalue() == ""
