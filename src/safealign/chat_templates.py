"""`model.chat_template`: give a model the conversation format you want instead of the one it ships with.

A base model often has no template (safealign then uses safe-rlhf's `default`), and an instruct model's own
template is not always the one the data was written for. The value is resolved once, here, to the Jinja text
that every stage sets on the tokenizer (so training, scoring, generation and `safealign chat` agree):

- a name: `default` (safe-rlhf's "BEGINNING OF CONVERSATION: USER: ... ASSISTANT:"), `chatml`, `llama2`,
  `mistral`, `zephyr`;
- a file: `.jinja`/`.j2`/`.txt` holding the template, or a `.json` holding a `chat_template` key
  (`tokenizer_config.json`, `chat_template.json`);
- the Jinja text itself (anything containing `{{` or `{%`).

The template is compiled and rendered on a sample conversation before any model is loaded, so a typo is one
line naming the file and line, not a traceback in the middle of a run.
"""

from __future__ import annotations

import json
from pathlib import Path

from .chat import DEFAULT_CHAT_TEMPLATE
from .errors import ConfigError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Meta's Llama-2-chat format: the system prompt goes inside the first [INST] block.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system_message = messages[0]['content'] %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set system_message = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{% if loop.first and system_message %}"
    "{{ bos_token + '[INST] <<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
    "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

# Mistral-7B-Instruct (v0.1/v0.2): user/assistant only.
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported') }}{% endif %}"
    "{% endfor %}"
)

ZEPHYR = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

TEMPLATES = {"default": DEFAULT_CHAT_TEMPLATE, "chatml": CHATML, "llama2": LLAMA2, "mistral": MISTRAL,
             "zephyr": ZEPHYR}
TEMPLATE_FILE_SUFFIXES = (".jinja", ".j2", ".txt", ".json")
_SAMPLE = [{"role": "user", "content": "How do I bake bread?"},
           {"role": "assistant", "content": "Mix flour, water and yeast."},
           {"role": "user", "content": "And then?"}]


def resolve_chat_template(value: str, key: str = "model.chat_template") -> str:
    """The Jinja text `value` names (see the module docstring), checked; ConfigError naming `key` otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a template name ({', '.join(TEMPLATES)}), a file or a Jinja template")
    text = value.strip()
    if text.lower() in TEMPLATES:
        return TEMPLATES[text.lower()]
    if "{{" in text or "{%" in text:
        check_chat_template(value, key)
        return value
    path = Path(text).expanduser()
    if path.is_file():
        template = _read_template_file(path, key)
        check_chat_template(template, str(path))
        return template
    if path.suffix in TEMPLATE_FILE_SUFFIXES or "/" in text or "\\" in text:
        raise ConfigError(f"{key}: {text}: no such file")
    raise ConfigError(f"{key}: {text!r} is not a template name ({', '.join(TEMPLATES)}), "
                      "an existing file or a Jinja template")


def _read_template_file(path: Path, key: str) -> str:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{key}: {path}: cannot read ({err})") from None
    if path.suffix != ".json":
        return raw
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    found = data.get("chat_template") if isinstance(data, dict) else None
    if isinstance(found, list):  # several named templates (HF's format): the one called "default"
        found = next((t.get("template") for t in found if isinstance(t, dict) and t.get("name") == "default"), None)
    if not isinstance(found, str) or not found.strip():
        raise ConfigError(f"{path}: chat_template: missing (a .json file must hold a \"chat_template\" string)")
    return found


def check_chat_template(template: str, source: str = "model.chat_template") -> None:
    """Compile `template` as transformers does (sandboxed Jinja, trim/lstrip blocks) and render a two-turn
    sample with a generation prompt; ConfigError naming `source` (and the line) when it fails."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    try:
        compiled = env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise ConfigError(f"{source}:{err.lineno}: chat template syntax error: {err.message}") from None
    try:
        text = compiled.render(messages=_SAMPLE, add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
    except jinja2.exceptions.TemplateError as err:
        raise ConfigError(f"{source}: chat template fails on a user/assistant/user conversation: {err}") from None
    missing = [m["content"] for m in _SAMPLE if m["content"] not in text]
    if missing:
        raise ConfigError(f"{source}: chat template drops message text (rendered without {missing[0]!r})")
