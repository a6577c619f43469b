"""The `safealign` command line: subcommands, help, version, error exit codes."""

import subprocess
import sys

import pytest

from safealign.cli import COMMANDS, build_parser, main


def test_every_stage_has_a_subcommand():
    assert set(COMMANDS) == {"prepare", "sft", "train-rm", "train-dpo", "sweep", "evaluate", "distill", "report",
                            "pipeline", "compare"}
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0


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
            "print(sorted(m for m in sys.modules if m in ('torch', 'transformers') or m.startswith('safealign.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(["safealign.cli", "safealign.config", "safealign.errors", "safealign.fileio"])


def test_console_script_runs_prepare(tmp_path):
    out = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "safealign.cli", "prepare", "--output", str(out),
                           "--set", "toy.num_pairs=100", "--show", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "prepared toy" in proc.stdout and (out / "stats.json").is_file()
    proc = subprocess.run([sys.executable, "-m", "safealign.cli", "prepare", "--dataset", str(tmp_path / "no.jsonl"),
                           "--output", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {tmp_path / 'no.jsonl'}: no such file or folder"
