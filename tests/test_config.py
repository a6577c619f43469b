"""The config machinery (safealign.config): sections, validation naming the key, overrides, redaction."""

import dataclasses

import pytest
import yaml

from safealign.cli import main
from safealign.config import load_config, save_resolved
from safealign.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_dataclass_defaults():
    cfg = load_config(None)
    assert cfg.section("data").dataset == "toy" and cfg.section("data").seed == 42
    assert cfg.section("toy").num_pairs == 3000 and cfg.section("run").seed == 42


def test_unknown_key_with_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.datset: unknown key \(did you mean 'dataset'\?\)$"):
        load_config(write(tmp_path, "data:\n  datset: foo\n"))
    with pytest.raises(ConfigError, match=r"^dat: unknown config section \(did you mean 'data'\?\)"):
        load_config(write(tmp_path, "dat:\n  dataset: foo\n"))


@pytest.mark.parametrize("text,overrides,message", [
    ("toy:\n  num_pairs: many\n", [], r"^toy\.num_pairs: expected an integer \(got 'many'\)$"),
    (None, ["data.schema=pku2025"], r"^data\.schema: must be one of auto, pku2023"),
    (None, ["data.min_tokens=[1, 2]"], r"^data\.min_tokens: expected int"),
    ("data:\n  train_fraction: 0.9\n", [], r"^data\.train_fraction: .*must sum to 1"),
    (None, ["toy.harmful_fraction=1.5"], r"^toy\.harmful_fraction: must be in \[0, 1\]"),
    ("reward:\n  learning_rate: -1.0e-5\n", [], r"^reward\.learning_rate: must be > 0"),
])
def test_wrong_type_or_impossible_value_names_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text) if text else None, overrides)


@pytest.mark.parametrize("argv,message", [
    (["--set", "dpo.learning_rate=-1"], "error: dpo.learning_rate: must be > 0"),
    (["--set", "data.val_fraction=0.5"], "error: data.train_fraction: train_fraction + val_fraction"),
    (["--set", "seedd=1"], "error: data.seedd: unknown key (did you mean 'seed'?)"),
    (["--set", "nosuchsection.x=1"], "error: --set nosuchsection.x: unknown config section"),
    (["--set", "novalue"], "error: --set novalue: expected key=value"),
])
def test_config_errors_exit_2_through_the_cli(tmp_path, capsys, argv, message):
    assert main(["prepare", "--output", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_config_file_errors_exit_2(tmp_path, capsys):
    assert main(["prepare", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = write(tmp_path, "data: [unclosed\n")
    assert main(["prepare", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:") and "invalid YAML" in err


def test_set_overrides_dotted_and_bare(tmp_path):
    path = write(tmp_path, "data:\n  seed: 1\ntoy:\n  num_pairs: 10\n")
    cfg = load_config(path, ["seed=3", "toy.seed=5", "min_tokens=2", "max_tokens=null"], default_section="data")
    data, toy = cfg.section("data"), cfg.section("toy")
    assert (data.seed, data.min_tokens, data.max_tokens, toy.seed, toy.num_pairs) == (3, 2, None, 5, 10)
    cfg = load_config(None, ["dataset=some/hub-id", "train_fraction=0.7", "val_fraction=0.2"], default_section="data")
    assert cfg.section("data").dataset == "some/hub-id" and cfg.section("data").train_fraction == 0.7
    with pytest.raises(ConfigError, match=r"use section\.key"):
        load_config(None, ["seed=3"])  # no stage to attach a bare key to


def test_save_resolved_removes_secrets(tmp_path):
    @dataclasses.dataclass
    class WithSecrets:
        api_key: str = "sk-very-secret"
        hub_token: str | None = "hf_secret"
        api_key_env: str = "OPENAI_API_KEY"  # the *name* of an env var is kept
        max_tokens: int = 7
        empty_token: str | None = None

    save_resolved(WithSecrets(), tmp_path / "c.yaml")
    text = (tmp_path / "c.yaml").read_text()
    assert "sk-very-secret" not in text and "hf_secret" not in text
    saved = yaml.safe_load(text)
    assert saved == {"api_key": "<redacted>", "hub_token": "<redacted>", "api_key_env": "OPENAI_API_KEY",
                     "max_tokens": 7, "empty_token": None}
    cfg = load_config(None, ["toy.num_pairs=12"])
    save_resolved(cfg, tmp_path / "all.yaml")
    assert yaml.safe_load((tmp_path / "all.yaml").read_text())["toy"]["num_pairs"] == 12


def test_prepare_saves_its_resolved_config(tmp_path):
    assert main(["prepare", "--output", str(tmp_path / "d"), "--set", "toy.num_pairs=150", "--set", "seed=9"]) == 0
    saved = yaml.safe_load((tmp_path / "d" / "config.yaml").read_text())
    assert saved["toy"]["num_pairs"] == 150 and saved["data"]["seed"] == 9
    assert saved["data"]["output_dir"] == str(tmp_path / "d")
