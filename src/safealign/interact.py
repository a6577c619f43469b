"""Talk to a trained model: `safealign chat --model PATH` (an interactive conversation) and
`safealign generate --model PATH --prompts FILE [--out FILE]` (answers to a file of prompts).

Both go through `generation.generate`, so the model sees exactly what it saw in training and evaluation: the
tokenizer's chat template saved with the model (or `--chat-template`, see `chat_templates`), left padding,
greedy decoding unless `--temperature` > 0, and vLLM when it is installed and a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from .errors import ConfigError, DataError
from .models.refs import check_model_ref

PROMPT_FILE_TYPES = (".txt", ".jsonl", ".json")
CHAT_HELP = "/reset starts a new conversation, /quit (or Ctrl-D) ends"


# --------------------------------------------------------------------------- arguments
def _add_model_arguments(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("--model", required=True,
                   help="model folder (e.g. runs/demo/models/aligned) or Hub id")
    p.add_argument("--chat-template", help="override the model's chat template: a name (default, chatml, llama2, "
                                           "mistral, zephyr), a .jinja/.json file or the Jinja text")
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help="answer length cap in tokens")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass when sampling")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                   help="auto = vLLM when installed with a GPU, else transformers")


def add_chat_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_arguments(p, max_new_tokens=256)
    p.add_argument("--system", help="a system message opening the conversation (if the template has a place for it)")


def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_arguments(p, max_new_tokens=256)
    p.add_argument("--prompts", required=True, help="prompts file: .txt (one per line), .jsonl or .json "
                                                    "(rows with `prompt`, or `messages` as a chat; optional `id`)")
    p.add_argument("--out", help="answers as JSONL (id, prompt, response); default: printed to stdout")
    p.add_argument("--batch-size", type=int, default=16, help="prompts generated together")


# --------------------------------------------------------------------------- model and tokenizer
def check_model_path(value: str, flag: str = "--model") -> str:
    """A local model folder, or something that can only be a Hub id (`models.refs.check_model_ref`)."""
    return check_model_ref(value, flag)


def load_chat_tokenizer(model: str, chat_template: str | None = None):
    """The model's tokenizer, padded on the left for generation, with the template override applied."""
    from .chat_templates import resolve_chat_template
    from .models.loading import load_tokenizer

    template = resolve_chat_template(chat_template, key="--chat-template") if chat_template else None
    return load_tokenizer(model, padding_side="left", chat_template=template)  # after the template check


def _check_sampling(args) -> None:
    if args.max_new_tokens <= 0:
        raise ConfigError(f"--max-new-tokens: must be > 0 (got {args.max_new_tokens})")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise ConfigError(f"--temperature must be >= 0 and --top-p in (0, 1] (got {args.temperature}, {args.top_p})")


def _gen_kwargs(args) -> dict:
    return dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                seed=args.seed, backend=args.backend)


# --------------------------------------------------------------------------- chat
def cli_chat(args, stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Read user turns from stdin, answer each with the whole conversation so far as context."""
    from .generation import generate

    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    _check_sampling(args)
    model = check_model_path(args.model)
    tok = load_chat_tokenizer(model, args.chat_template)
    interactive = stdin.isatty()
    opening = [{"role": "system", "content": args.system}] if getattr(args, "system", None) else []
    history = list(opening)
    print(f"chatting with {args.model}; {CHAT_HELP}", file=stderr)
    while True:
        if interactive:
            print("you> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            history = list(opening)
            print("(new conversation)", file=stderr)
            continue
        if text.startswith("/"):
            print(f"unknown command {text.split()[0]}; {CHAT_HELP}", file=stderr)
            continue
        history.append({"role": "user", "content": text})
        answer = generate(model, [history], tokenizer=tok, show_progress=False, **_gen_kwargs(args))[0]
        history.append({"role": "assistant", "content": answer})
        print(f"model> {answer}" if interactive else answer, file=stdout, flush=True)
    return 0


# --------------------------------------------------------------------------- generate
def read_prompts(path: str) -> list[dict]:
    """Rows {"prompt": str | list of messages, "id"?} from a .txt, .jsonl or .json file (DataError per row)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(str(p), None, None, "no such file")
    if p.suffix not in PROMPT_FILE_TYPES:
        raise DataError(str(p), None, None, f"unsupported file type (use {', '.join(PROMPT_FILE_TYPES)})")
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".txt":
        rows = [{"prompt": line.strip()} for line in text.splitlines() if line.strip()]
    elif p.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(str(p), i, None, f"invalid JSON ({err.msg})") from None
    else:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(str(p), err.lineno, None, f"invalid JSON ({err.msg})") from None
        if not isinstance(rows, list):
            raise DataError(str(p), None, None, "must hold a list of rows")
    out = []
    for i, row in enumerate(rows, 1):
        out.append(_prompt_row(row, str(p), i))
    if not out:
        raise DataError(str(p), None, None, "no prompts")
    return out


def _prompt_row(row, where: str, i: int) -> dict:
    if isinstance(row, str):
        row = {"prompt": row}
    if not isinstance(row, dict):
        raise DataError(where, i, None, "must be an object with `prompt` or `messages`")
    if "messages" in row and "prompt" not in row:
        msgs = row["messages"]
        if (not isinstance(msgs, list) or not msgs or
                not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                        for m in msgs)):
            raise DataError(where, i, "messages", "must be a non-empty list of {role, content}")
        prompt = msgs
    else:
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(where, i, "prompt", "missing or empty")
    out = {"prompt": prompt}
    if row.get("id") is not None:
        out["id"] = row["id"]
    return out


def cli_generate(args, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Answer every prompt of `--prompts`; write JSONL rows {id?, prompt, response} to `--out` or stdout."""
    from .fileio import write_jsonl
    from .generation import generate

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    _check_sampling(args)
    if args.batch_size <= 0:
        raise ConfigError(f"--batch-size: must be > 0 (got {args.batch_size})")
    rows = read_prompts(args.prompts)  # a bad file fails before the model is loaded
    model = check_model_path(args.model)
    tok = load_chat_tokenizer(model, args.chat_template)
    answers = generate(model, [r["prompt"] for r in rows], tokenizer=tok, batch_size=args.batch_size,
                       show_progress=True, **_gen_kwargs(args))
    results = [{**r, "response": a} for r, a in zip(rows, answers)]
    if args.out:
        write_jsonl(args.out, results)
        print(f"generate: {len(results)} answers -> {args.out}", file=stderr)
    else:
        for r in results:
            print(json.dumps(r, ensure_ascii=False), file=stdout)
    return 0


def cli_main(cfg, args) -> int:
    """Entry point for `safealign chat` / `safealign generate` (the config is not needed)."""
    return cli_chat(args) if args.command == "chat" else cli_generate(args)
