"""`safealign chat` and `safealign generate` on the real tiny model: the conversation is the context of each
answer, the chat template is the training one (or the override), files in and out, one-line errors."""

import argparse
import io
import json

import pytest

from safealign.errors import ConfigError, DataError
from safealign.generation import generate
from safealign.interact import add_chat_arguments, add_generate_arguments, cli_chat, cli_generate
from safealign.models.loading import load_tokenizer

GEN = dict(max_new_tokens=8, temperature=0.0, top_p=1.0, seed=0, backend="hf", show_progress=False)
SAMPLE = ["--max-new-tokens", "8", "--backend", "hf"]


@pytest.fixture(scope="module")
def sharp(tmp_path_factory, tiny_base):
    """The tiny base with its weights scaled up: still a random model, but its greedy answers depend on their
    context (the plain one answers the same tokens to every prompt), so a test can tell what the model saw."""
    import torch

    from safealign.models.loading import load_causal_lm

    out = tmp_path_factory.mktemp("sharp") / "model"
    model = load_causal_lm(str(tiny_base), dtype="float32")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(6)
    model.save_pretrained(out)
    load_tokenizer(str(tiny_base)).save_pretrained(out)
    return out


def _args(add, argv):
    p = argparse.ArgumentParser()
    add(p)
    return p.parse_args(argv)


def _chat(argv, stdin_text):
    out, err = io.StringIO(), io.StringIO()
    code = cli_chat(_args(add_chat_arguments, argv), stdin=io.StringIO(stdin_text), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_chat_keeps_the_conversation_and_resets(sharp):
    model = str(sharp)
    code, out, err = _chat(["--model", model, *SAMPLE],
                           "how do I bake bread?\n\nand then?\n/reset\nhow do I bake bread?\n/quit\nnever read\n")
    assert code == 0 and "/reset starts a new conversation" in err and "(new conversation)" in err
    tok = load_tokenizer(model, padding_side="left")
    u1, u2 = "how do I bake bread?", "and then?"
    [a1] = generate(model, [[{"role": "user", "content": u1}]], tokenizer=tok, **GEN)
    [a2] = generate(model, [[{"role": "user", "content": u1}, {"role": "assistant", "content": a1},
                             {"role": "user", "content": u2}]], tokenizer=tok, **GEN)
    [a2_alone] = generate(model, [u2], tokenizer=tok, **GEN)
    # three answers: turn 2 saw turn 1 (answering it alone gives another answer), turn 3 starts afresh
    assert out == f"{a1}\n{a2}\n{a1}\n"
    assert a2 != a2_alone


def test_chat_uses_the_template_override(sharp):
    from safealign.chat import prompt_text
    from safealign.chat_templates import resolve_chat_template

    model = str(sharp)
    code, out, _ = _chat(["--model", model, *SAMPLE, "--chat-template", "chatml"], "hello there\n")
    tok = load_tokenizer(model, padding_side="left")
    [with_default] = generate(model, ["hello there"], tokenizer=tok, **GEN)
    tok.chat_template = resolve_chat_template("chatml")
    assert prompt_text(tok, "hello there").startswith("<|im_start|>user")
    assert out == generate(model, ["hello there"], tokenizer=tok, **GEN)[0] + "\n" != with_default + "\n"


def test_chat_bad_model_paths_are_one_line(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "checkpoint-3").mkdir()
    with pytest.raises(ConfigError, match=r"--model .*/run/checkpoints: not a model folder \(no config.json\) "
                                          r"\(it holds checkpoints: pass one of its checkpoint-N folders\)"):
        _chat(["--model", str(tmp_path / "run" / "checkpoints")], "hi\n")
    with pytest.raises(ConfigError, match=r"--model .*/nowhere/models/aligned: no such folder"):
        _chat(["--model", str(tmp_path / "nowhere" / "models" / "aligned")], "hi\n")
    with pytest.raises(ConfigError, match="--chat-template: 'nosuch' is not a template name"):
        _chat(["--model", "no-such/model", "--chat-template", "nosuch"], "")  # before any loading
    with pytest.raises(ConfigError, match=r"--max-new-tokens: must be > 0 \(got 0\)"):
        _chat(["--model", "no-such/model", "--max-new-tokens", "0"], "")


def test_generate_writes_answers_in_input_order(tmp_path, sharp):
    model = str(sharp)
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"id": "a", "prompt": "how do I bake bread?"}, {"prompt": "is a weapon safe?"},
            {"id": 7, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                   {"role": "user", "content": "bread?"}]}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "answers.jsonl"
    err = io.StringIO()
    args = _args(add_generate_arguments, ["--model", model, "--prompts", str(prompts), "--out", str(out),
                                          *SAMPLE, "--batch-size", "16"])
    assert cli_generate(args, stderr=err) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    tok = load_tokenizer(model, padding_side="left")
    expected = generate(model, [rows[0]["prompt"], rows[1]["prompt"], rows[2]["messages"]], tokenizer=tok, **GEN)
    assert [g.get("id") for g in got] == ["a", None, 7]
    assert [g["prompt"] for g in got] == [rows[0]["prompt"], rows[1]["prompt"], rows[2]["messages"]]
    assert [g["response"] for g in got] == expected
    assert f"generate: 3 answers -> {out}" in err.getvalue()


def test_generate_from_a_text_file_to_stdout(tmp_path, tiny_base):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("how do I bake bread?\n\nis a weapon safe?\n")
    stdout = io.StringIO()
    args = _args(add_generate_arguments, ["--model", str(tiny_base), "--prompts", str(prompts), *SAMPLE])
    assert cli_generate(args, stdout=stdout) == 0
    got = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [g["prompt"] for g in got] == ["how do I bake bread?", "is a weapon safe?"]


@pytest.mark.parametrize("name, content, message", [
    ("p.jsonl", '{"prompt": "ok"}\n{"prompt": ""}\n', r"p.jsonl:2: prompt: missing or empty"),
    ("p.jsonl", '{"prompt": "ok"}\nnot json\n', r"p.jsonl:2: invalid JSON"),
    ("p.json", '[{"messages": [{"role": "user"}]}]', r"p.json:1: messages: must be a non-empty list"),
    ("p.csv", "prompt\nhi\n", r"p.csv: unsupported file type \(use .txt, .jsonl, .json\)"),
    ("p.txt", "\n\n", r"p.txt: no prompts"),
])
def test_generate_bad_prompt_files_name_file_and_row(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    args = _args(add_generate_arguments, ["--model", "never-loaded", "--prompts", str(tmp_path / name)])
    with pytest.raises(DataError, match=message) as info:
        cli_generate(args)
    assert info.value.exit_code == 2
