"""Model card (README.md in the Hub's format) and --push-to-hub up to the network: a real HTTP server on
127.0.0.1 stands in for the Hub and refuses the token; the token is read from the environment only and never
written to the card, the error line or the log."""

import logging

import pytest
import yaml
from helpers.hub import RefusingHub, refusing_hub

from safealign.errors import ConfigError, SafeAlignError
from safealign.modelcard import push_to_hub, write_model_card

TOKEN = "hf_TESTsecretTOKEN0123456789"
CONFIG = {"run": {"name": "demo", "seed": 42},
          "model": {"name_or_path": "mistralai/Mistral-7B-v0.1", "dtype": "bfloat16"},
          "data": {"dataset": "PKU-Alignment/PKU-SafeRLHF"},
          "dpo": {"algorithm": "safe_mm_dpo", "beta_ori": 0.1, "lambda_init": 1.0, "cost_threshold": 0.0},
          "eval": {"judge": "openai", "api_key": "sk-live-should-not-appear"}}
DATA = {"train": 27000, "val": 3000, "test": 3000, "harmful prompts (test)": 170}
REPORT = {"base": "base", "models": {
    "base": {"safety_rate": 0.41, "safety_ci": [0.34, 0.49], "safety_judge": "cost model (models/harmless_rm)",
             "n_safety": 170, "helpfulness": None, "helpfulness_ci": None, "helpfulness_judge": None,
             "mt_bench": {"overall": 5.1, "judge": "gpt-4o-mini"}},
    "aligned": {"safety_rate": 0.88, "safety_ci": [0.82, 0.92], "safety_judge": "cost model (models/harmless_rm)",
                "n_safety": 170, "helpfulness": 0.61, "helpfulness_ci": [0.55, 0.67],
                "helpfulness_judge": "reward model (models/helpful_rm)",
                "mt_bench": {"overall": 5.4, "judge": "gpt-4o-mini"}}}}


@pytest.fixture
def model_dir(tmp_path, tiny_base):
    import shutil

    out = tmp_path / "aligned"
    shutil.copytree(tiny_base, out)
    return out


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_has_hub_metadata_and_every_section(model_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    path = write_model_card(model_dir, method="safe_mm_dpo", config_dict=CONFIG, data_summary=DATA,
                            eval_summary=REPORT, license="apache-2.0")
    text = path.read_text()
    assert path == model_dir / "README.md"
    meta = _front_matter(text)
    assert meta["license"] == "apache-2.0" and meta["base_model"] == "mistralai/Mistral-7B-v0.1"
    assert meta["datasets"] == ["PKU-Alignment/PKU-SafeRLHF"] and "safe-mm-dpo" in meta["tags"]
    for heading in ("# aligned: Safe-MM-DPO", "## Method", "## Training configuration", "## Data", "## Evaluation",
                    "## How to use", "## Limitations"):
        assert f"\n{heading}\n" in text, heading
    assert "λ ← max(0, λ + η_λ·(J_C − threshold))" in text
    config_block = text.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(config_block)["dpo"]["beta_ori"] == 0.1
    assert "| harmful prompts (test) | 170 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| **aligned**") or line.startswith("| base |")]
    assert rows == ["| **aligned** (this model) | 0.880 [0.820, 0.920] | 0.610 [0.550, 0.670] | 5.40 |",
                    "| base | 0.410 [0.340, 0.490] | – | 5.10 |"]
    assert "- safety rate: cost model (models/harmless_rm)" in text
    assert "- helpfulness: reward model (models/helpful_rm)" in text and "- MT-Bench: gpt-4o-mini" in text
    assert TOKEN not in text and "sk-live-should-not-appear" not in text


def test_local_base_and_data_stay_out_of_the_metadata(model_dir):
    cfg = dict(CONFIG, model={"name_or_path": str(model_dir)}, data={"dataset": "toy"})
    text = write_model_card(model_dir, method="dpo", config_dict=cfg).read_text()
    meta = _front_matter(text)
    assert "base_model" not in meta and "datasets" not in meta  # the Hub rejects local paths
    assert meta["license"] == "other"  # the base model's and the data's terms decide, not safealign
    assert "Not evaluated yet" in text and "## Data\n\nNot recorded." in text


def test_card_rejects_unknown_method_and_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="unknown method 'ppo'"):
        write_model_card(tmp_path, method="ppo", config_dict={})
    with pytest.raises(ConfigError, match="no such model folder"):
        write_model_card(tmp_path / "absent", method="dpo", config_dict={})


@pytest.fixture
def hub():
    with refusing_hub() as url:
        yield url


@pytest.fixture
def online(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_push_needs_a_token_from_the_environment(model_dir, monkeypatch):
    write_model_card(model_dir, method="dpo", config_dict=CONFIG)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"^--push-to-hub: set HF_TOKEN in the environment"):
        push_to_hub(model_dir, "me/aligned")
    monkeypatch.setenv("MY_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="'not a repo' is not a repo id"):
        push_to_hub(model_dir, "not a repo", token_env="MY_TOKEN")


def test_push_offline_is_one_line(model_dir, monkeypatch):
    write_model_card(model_dir, method="dpo", config_dict=CONFIG)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(SafeAlignError) as info:  # the suite runs with HF_HUB_OFFLINE=1
        push_to_hub(model_dir, "me/aligned")
    assert str(info.value) == ("--push-to-hub me/aligned: HF_HUB_OFFLINE=1 is set; unset it on a machine with "
                               "network access and push again (the folder is complete)")


def test_push_checks_the_folder_first(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="has no README.md; write the model card first"):
        push_to_hub(model_dir, "me/aligned")
    with pytest.raises(ConfigError, match="is not a model folder"):
        push_to_hub(tmp_path, "me/aligned")


def test_push_to_a_hub_that_refuses_the_token(model_dir, monkeypatch, hub, online, caplog):
    write_model_card(model_dir, method="dpo", config_dict=CONFIG)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SafeAlignError) as info:
        push_to_hub(model_dir, "me/aligned", endpoint=hub)
    msg = str(info.value)
    assert msg.startswith("--push-to-hub me/aligned: the Hub refused the token (HTTP 401)") and "\n" not in msg
    assert RefusingHub.seen[0][:2] == ("POST", "/api/repos/create")
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in RefusingHub.seen)  # sent, as a header only
    assert TOKEN not in msg and TOKEN not in caplog.text
    assert TOKEN not in (model_dir / "README.md").read_text()


def test_push_when_the_hub_is_unreachable(model_dir, monkeypatch, online):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_model_card(model_dir, method="dpo", config_dict=CONFIG)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(SafeAlignError, match=r"^--push-to-hub me/aligned: cannot reach the Hub \(ConnectError"):
        push_to_hub(model_dir, "me/aligned", endpoint=f"http://127.0.0.1:{port}")


def test_every_training_algorithm_has_a_card_description():
    from safealign.dpo.config import ALGORITHMS
    from safealign.modelcard import METHODS

    assert set(ALGORITHMS) <= set(METHODS)  # an aligned model of any algorithm gets its card
