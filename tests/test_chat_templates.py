"""`model.chat_template`: names, files and inline templates resolve to Jinja that the real tokenizer renders as
expected; bad values fail with one line naming the key or the file and line."""

import json

import pytest

from safealign.chat import prompt_text
from safealign.chat_templates import TEMPLATES, resolve_chat_template
from safealign.errors import ConfigError


@pytest.fixture(scope="module")
def tok(tiny_base):
    from safealign.models.loading import load_tokenizer

    return load_tokenizer(str(tiny_base))


@pytest.mark.parametrize("name, expected", [
    ("default", "<s>BEGINNING OF CONVERSATION: USER: Hi ASSISTANT:"),
    ("chatml", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    ("llama2", "<s>[INST] Hi [/INST]"),
    ("mistral", "<s>[INST] Hi [/INST]"),
    ("zephyr", "<|user|>\nHi</s>\n<|assistant|>\n"),
    ("ChatML", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
])
def test_named_templates_render_on_the_real_tokenizer(tok, name, expected):
    tok.chat_template = resolve_chat_template(name)
    assert prompt_text(tok, "Hi") == expected  # the text every stage feeds the model


def test_multi_turn_and_system_prompt(tok):
    tok.chat_template = resolve_chat_template("llama2")
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bread?"}]
    assert prompt_text(tok, conv) == ("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s>"
                                      "<s>[INST] Bread? [/INST]")
    tok.chat_template = resolve_chat_template("chatml")
    assert prompt_text(tok, conv).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")


def test_files_and_inline_templates(tmp_path, tok):
    jinja = tmp_path / "my.jinja"
    jinja.write_text("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                     "{% if add_generation_prompt %}<assistant>{% endif %}")
    tok.chat_template = resolve_chat_template(str(jinja))
    assert prompt_text(tok, "Hi") == "<user>Hi<assistant>"
    cfg = tmp_path / "tokenizer_config.json"
    cfg.write_text(json.dumps({"model_max_length": 512, "chat_template": TEMPLATES["chatml"]}))
    assert resolve_chat_template(str(cfg)) == TEMPLATES["chatml"]
    multi = tmp_path / "chat_template.json"
    multi.write_text(json.dumps({"chat_template": [{"name": "tool_use", "template": "{{ x }}"},
                                                   {"name": "default", "template": TEMPLATES["zephyr"]}]}))
    assert resolve_chat_template(str(multi)) == TEMPLATES["zephyr"]
    inline = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A:"
    assert resolve_chat_template(inline) == inline


@pytest.mark.parametrize("value, message", [
    ("vicuna", r"model.chat_template: 'vicuna' is not a template name \(default, chatml, llama2, mistral, zephyr\)"),
    ("templates/absent.jinja", r"model.chat_template: templates/absent.jinja: no such file"),
    ("", r"model.chat_template: must be a template name"),
    ("{% for m in messages %}{{ m['content'] }}", r"model.chat_template:1: chat template syntax error"),
    ("{{ messages[0]['role'] }}", r"chat template drops message text"),
    ("{{ raise_exception('no') }}", r"chat template fails on a user/assistant/user conversation: no"),
])
def test_bad_values_are_one_line(value, message):
    with pytest.raises(ConfigError, match=message) as info:
        resolve_chat_template(value)
    assert "\n" not in str(info.value)


def test_a_broken_file_names_the_file_and_line(tmp_path):
    bad = tmp_path / "broken.jinja"
    bad.write_text("{% for m in messages %}\n{{ m['content'] }\n{% endfor %}")
    with pytest.raises(ConfigError, match=rf"^{bad}:2: chat template syntax error"):
        resolve_chat_template(str(bad))
    no_key = tmp_path / "tokenizer_config.json"
    no_key.write_text("{}")
    with pytest.raises(ConfigError, match="chat_template: missing"):
        resolve_chat_template(str(no_key))


# --------------------------------------------------------------------------- wired into the stages
def test_the_config_key_reaches_every_tokenizer_a_run_loads(tmp_path, tiny_base, capsys):
    """`model.chat_template` is checked when the config loads, saved with the tiny base and every trained model,
    applied by `load_tokenizer` (so the stages, the evaluation of a Hub base and `safealign chat` agree)."""
    from safealign import generation
    from safealign.chat_templates import CHATML, ZEPHYR
    from safealign.cli import main
    from safealign.config import load_config
    from safealign.fileio import read_jsonl
    from safealign.models.loading import load_tokenizer

    with pytest.raises(ConfigError, match="^model.chat_template: 'nosuch' is not a template name"):
        load_config(None, ["model.chat_template=nosuch"])
    assert load_tokenizer(str(tiny_base), chat_template="chatml").chat_template == CHATML
    run = tmp_path / "run"
    sets = ["--run-dir", str(run), "--set", "model.chat_template=chatml", "--set", "toy.num_pairs=40"]
    assert main(["prepare", *sets, "--show", "0"]) == 0
    assert main(["sft", *sets, "--set", "sft.enabled=true", "--set", "sft.max_steps=1", "--set", "sft.use_cpu=true",
                 "--set", "model.tiny_vocab_size=300"]) == 0
    for folder in ("base", "sft"):  # saved with the model: what every later stage and `safealign chat` read
        assert load_tokenizer(str(run / "models" / folder)).chat_template == CHATML, folder
    _, tok = generation._load("hf", str(tiny_base), None, "fp-test", chat_template=ZEPHYR)
    assert prompt_text(tok, "Hi") == "<|user|>\nHi</s>\n<|assistant|>\n"  # evaluation of a model given by path
    generation.release()
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hi\n")
    capsys.readouterr()
    assert main(["generate", "--model", str(run / "models" / "sft"), "--prompts", str(prompts),
                 "--max-new-tokens", "2"]) == 0
    assert [json.loads(line)["prompt"] for line in capsys.readouterr().out.splitlines()] == ["Hi"]
    assert not read_jsonl(run / "data" / "train.jsonl")[0].get("chat_template")  # data stays format-free
