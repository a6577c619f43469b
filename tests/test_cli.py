"""The `safealign` command line: subcommands, help texts, the exit-code contract (2 = bad config or data) per
subcommand, zero-step training refused, the thread setting, the run-dir lock, chat/generate."""

import io
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from safealign.cli import COMMANDS, DESCRIPTION, HELP, PIPELINE_STAGES, SET_EXAMPLES, build_parser, main
from safealign.config import load_config
from safealign.fileio import read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[1]
CI = REPO / "configs" / "ci_small.yaml"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A run directory holding prepared toy data (nothing trained)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["prepare", "--config", str(CI), "--run-dir", str(run), "--set", "toy.num_pairs=80",
                 "--show", "0"]) == 0
    return run


# --------------------------------------------------------------------------- commands and help
def test_every_command_has_a_subcommand_and_every_argument_a_help_text():
    assert set(COMMANDS) == {"prepare", "sft", "train-rm", "train-dpo", "sweep", "evaluate", "distill", "report",
                            "pipeline", "chat", "generate", "compare"}
    for name, sub in _subparsers().items():
        with pytest.raises(SystemExit) as exc:
            sub.parse_args(["--help"])
        assert exc.value.code == 0
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
    prepare = {a.dest: a.help for a in _subparsers()["prepare"]._actions}
    assert "column layout" in prepare["schema"] and "dropped" in prepare["on_error"] and "N" in prepare["show"]
    assert "cost model" in {a.dest: a.help for a in _subparsers()["train-rm"]._actions}["dimension"]
    assert "MT-Bench" in {a.dest: a.help for a in _subparsers()["evaluate"]._actions}["what"]


def test_help_texts_are_plain_and_pipeline_lists_its_stages(capsys, tmp_path):
    from safealign.pipeline.plan import build_plan

    assert "`" not in DESCRIPTION and all("`" not in h for h in HELP.values())
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "`" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["pipeline", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert " ".join(f"stages, in order: {PIPELINE_STAGES}".split()) in text
    for st in build_plan(load_config(CI, [f"run.run_dir={tmp_path}"])):  # every stage the plan can hold
        generic = re.sub(r"^dpo_\w+$", "dpo_<algo>", st.name)
        generic = re.sub(r"^evaluate_(?!base$|distilled$)\w+$", "evaluate_<algo>", generic)
        assert re.search(rf"(^|[ ,]){re.escape(generic)}([ ,]|$)", PIPELINE_STAGES), st.name


def test_set_example_of_each_subcommand_is_its_own_section_and_valid():
    for name, example in SET_EXAMPLES.items():
        section = COMMANDS[name][1]
        overrides = re.findall(r"--set (\S+=\S+?)\)?(?:\s|$)", example)
        assert overrides, name
        for text in overrides:
            key = text.split("=")[0]
            if "." in key and name not in ("pipeline", "report"):
                assert key.startswith(section + "."), (name, text)  # not dpo.beta_ori for prepare
            load_config(None, [text], default_section=section)  # a valid setting, bare or dotted
    assert sum("beta_ori" in e for e in SET_EXAMPLES.values()) <= 2


def test_version_and_no_command(capsys):
    from safealign import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__
    assert main([]) == 2


def test_bad_flag_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--schema", "nonsense"])
    assert exc.value.code == 2


def test_help_loads_no_stage_module():
    """`safealign --help` stays fast: the CLI imports a stage's module (and torch) only to run it."""
    code = ("import sys; from safealign import cli; cli.build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m in ('torch', 'transformers', 'huggingface_hub') "
            "or m.startswith('safealign.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(["safealign.cli", "safealign.config", "safealign.errors", "safealign.fileio",
                                       "safealign.interact", "safealign.layout", "safealign.logs",
                                       "safealign.models", "safealign.models.refs", "safealign.threads"])


def test_console_script_runs_prepare(tmp_path):
    out = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "safealign.cli", "prepare", "--output", str(out),
                           "--set", "toy.num_pairs=100", "--show", "1"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "prepared toy" in proc.stdout and (out / "stats.json").is_file()
    assert not (tmp_path / "runs").exists()  # --output outside any run directory: no log folder made up
    proc = subprocess.run([sys.executable, "-m", "safealign.cli", "prepare", "--dataset", str(tmp_path / "no.jsonl"),
                           "--output", str(tmp_path / "o")], capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {tmp_path / 'no.jsonl'}: no such file or folder"


# --------------------------------------------------------------------------- the exit-code contract
def test_missing_prepared_data_is_exit_2_for_every_training_command(tmp_path, capsys, tiny_base):
    fresh = str(tmp_path / "fresh")
    for argv in (["sft"], ["train-rm", "--dimension", "helpful"], ["train-dpo"],
                 ["evaluate", "safety", "--model", f"x={tiny_base}"]):
        assert main([*argv, "--config", str(CI), "--run-dir", fresh]) == 2, argv
        line = _one_error_line(capsys)
        assert "data/" in line and "run `safealign prepare` first" in line, (argv, line)
    assert not (tmp_path / "fresh" / "models" / "aligned").exists()


def test_config_and_input_errors_are_exit_2_per_subcommand(tmp_path, capsys, prepared):
    run = str(prepared)
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    cases = [
        (["prepare", "--output", str(foreign)], "holds no prepared data"),
        (["distill", "--run-dir", run], "teacher model not found"),
        (["report", "--run-dir", run, "--models", "nosuchmodel"], "report --models: no safety.json"),
        (["sweep", "--run-dir", run, "--set", "lambda_init=[]"], "sweep.lambda_init"),
        (["train-dpo", "--run-dir", run], "the starting policy (sft.enabled) is not trained yet"),
        (["chat", "--model", str(tmp_path / "nowhere")], "no such folder"),
        (["generate", "--model", str(prepared / "data"), "--prompts", str(tmp_path / "p.txt")], "no such file"),
    ]
    for argv, expected in cases:
        assert main([*argv[:1], "--config", str(CI), *argv[1:]] if argv[0] not in ("chat", "generate")
                    else argv) == 2, argv
        assert expected in _one_error_line(capsys), argv
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_evaluate_model_errors_are_one_line_and_fast(tmp_path, capsys, prepared, tiny_base):
    import shutil

    run = str(prepared)
    data = prepared / "data"
    argv = ["evaluate", "safety", "--config", str(CI), "--run-dir", run, "--model"]
    assert main([*argv, f"x={data}"]) == 2  # a folder that holds no model
    assert _one_error_line(capsys) == (f"error: --model {data}: not a model folder (no config.json); pass a folder "
                                       "written by save_pretrained, e.g. runs/<name>/models/aligned")
    assert main([*argv, f"x={tmp_path}/missing/model"]) == 2  # a missing local folder: local wording
    assert _one_error_line(capsys) == f"error: --model {tmp_path}/missing/model: no such folder"
    t0 = time.time()
    assert main([*argv, "nosuch-org/nosuch-model"]) == 2  # offline (the suite sets HF_HUB_OFFLINE=1)
    line = _one_error_line(capsys)
    assert time.time() - t0 < 10 and "not in the local Hugging Face cache" in line and "HF_HUB_OFFLINE" in line
    broken = tmp_path / "broken"
    shutil.copytree(tiny_base, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    assert main([*argv, f"broken={broken}"]) == 2  # a model that fails to load
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {broken}: cannot load the model (") and not (prepared / "results" / "broken"
                                                                                 / "eval.json").exists()


def test_hub_unreachable_is_one_line_without_retries(monkeypatch):
    from safealign.errors import ConfigError
    from safealign.models import refs

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    refs.hub_reachable.cache_clear()
    t0 = time.time()
    with pytest.raises(ConfigError, match="the Hugging Face Hub cannot be reached and the model is not in the local "
                                          "cache"):
        refs.hub_load_kwargs("nosuch-org/nosuch-model")
    assert time.time() - t0 < refs.HUB_PROBE_TIMEOUT + 2
    refs.hub_reachable.cache_clear()


def test_bare_set_on_pipeline_suggests_the_section(tmp_path, capsys):
    assert main(["pipeline", "--run-dir", str(tmp_path / "r"), "--set", "beta_ori=0.2"]) == 2
    assert _one_error_line(capsys) == ("error: --set beta_ori=0.2: a bare key means section 'run' here, which has "
                                       "no 'beta_ori'; beta_ori is a key of dpo: write --set dpo.beta_ori=0.2")
    assert main(["pipeline", "--run-dir", str(tmp_path / "r"), "--set", "num_threads=1", "--only", "nope"]) == 2
    assert "unknown stage" in _one_error_line(capsys)
    assert not (tmp_path / "r").exists()  # a rejected selection leaves no empty run directory behind


def test_a_second_pipeline_on_a_locked_run_dir_says_who_holds_it(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from safealign.config import load_config
        from safealign.layout import RunLayout
        from safealign.runstate import run_lock
        with run_lock(RunLayout.from_config(load_config(None, ["run.run_dir={run}"]))):
            print("locked", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["pipeline", "--config", str(CI), "--run-dir", str(run)]) == 2
        line = _one_error_line(capsys)
        assert f"pid {holder.pid} on " in line and "another pipeline is writing into this run directory" in line
        assert not (run / "run.json").exists() and not (run / "data").exists()
    finally:
        holder.communicate("\n", timeout=60)
    from safealign.layout import RunLayout
    from safealign.runstate import run_lock

    with run_lock(RunLayout.from_config(load_config(None, [f"run.run_dir={run}"]))):  # free again once it ended
        pass


# --------------------------------------------------------------------------- zero-step training
@pytest.mark.parametrize("argv,key", [
    (["sft"], "sft.num_train_epochs"),
    (["train-rm", "--dimension", "helpful"], "reward.num_train_epochs"),
    (["train-dpo"], "dpo.num_train_epochs"),
])
def test_a_stage_that_would_take_no_optimizer_step_is_exit_2(prepared, capsys, argv, key):
    section = key.split(".")[0]
    code = main([*argv, "--config", str(CI), "--run-dir", str(prepared), "--set", f"{key}=0.001",
                 "--set", f"{section}.max_steps=-1"])
    line = _one_error_line(capsys)
    assert code == 2 and line.startswith(f"error: {key}: ") and "give no optimizer step" in line
    for model in ("sft", "helpful_rm", "aligned"):  # nothing that looks trained
        assert not (prepared / "models" / model).exists(), model


def test_negative_epochs_stop_the_pipeline_before_it_starts(tmp_path, capsys):
    for config in (CI, REPO / "configs" / "demo.yaml"):  # with max_steps set (ci_small) and without (demo)
        run = tmp_path / config.stem
        assert main(["pipeline", "--config", str(config), "--run-dir", str(run),
                     "--set", "dpo.num_train_epochs=-1"]) == 2
        assert _one_error_line(capsys).startswith("error: dpo.num_train_epochs: must be > 0 (got -1.0)")
        assert not run.exists()


# --------------------------------------------------------------------------- threads
def test_run_num_threads_sizes_every_pool_here_and_in_children(tmp_path):
    run = tmp_path / "run"
    code = (f"import os, torch; from safealign.cli import main; "
            f"c = main(['prepare', '--run-dir', '{run}', '--set', 'toy.num_pairs=40', '--show', '0', "
            f"'--set', 'run.num_threads=2']); "
            f"print(c, torch.get_num_threads(), torch.get_num_interop_threads(), os.environ['OMP_NUM_THREADS'], "
            f"os.environ['MKL_NUM_THREADS'], os.environ['RAYON_NUM_THREADS'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**ENV, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-6:] == ["0", "2", "2", "2", "2", "2"]  # children inherit the environment
    assert "threads: 2 (torch intra-op 2, inter-op 2)" in (run / "logs" / "prepare.log").read_text()
    proc = subprocess.run([sys.executable, "-m", "safealign.cli", "prepare", "--run-dir", str(run),
                           "--set", "run.num_threads=0"], capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: run.num_threads: must be a whole number >= 1 or null (got 0)"


# --------------------------------------------------------------------------- chat and generate
def test_generate_and_chat_commands_talk_to_a_model(tmp_path, tiny_base, capsys, monkeypatch):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"id": "a", "prompt": "How do I bake bread?"}, {"prompt": "Name a colour."}])
    out = tmp_path / "answers.jsonl"
    assert main(["generate", "--model", str(tiny_base), "--prompts", str(prompts), "--out", str(out),
                 "--max-new-tokens", "4"]) == 0
    rows = read_jsonl(out)
    assert [r.get("id") for r in rows] == ["a", None] and all(isinstance(r["response"], str) for r in rows)
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("How do I bake bread?\n/quit\n"))
    assert main(["chat", "--model", str(tiny_base), "--max-new-tokens", "4", "--chat-template", "chatml"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1 and "chatting with" in captured.err  # one answer (maybe empty: random)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    assert main(["chat", "--model", str(tiny_base), "--chat-template", "nosuch"]) == 2
    assert "--chat-template: 'nosuch' is not a template name" in _one_error_line(capsys)
