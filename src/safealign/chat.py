"""Chat formatting shared by every stage, so (prompt, response) is tokenized the same way when a reward
model is trained, when it scores, when the policy is trained and when it generates.

Tokenization keeps the prompt and the response apart (`encode_pair`): the response-token boundary is exact,
which the DPO log-probabilities and the response-only SFT loss both need.
"""

from __future__ import annotations

from typing import Sequence

# safe-rlhf's conversation format; used for any tokenizer that has no chat template (e.g. Mistral-7B-v0.1 base).
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}BEGINNING OF CONVERSATION:"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %} USER: {{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %} ASSISTANT: {{ message['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
)


def ensure_chat_template(tokenizer) -> None:
    """Give the tokenizer the default template when it has none, and a pad token (= eos) when it lacks one."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def as_messages(prompt: str | Sequence[dict]) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


def prompt_text(tokenizer, prompt: str | Sequence[dict]) -> str:
    """The text the model sees before it answers (generation prompt included)."""
    ensure_chat_template(tokenizer)
    return tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)


def response_text(response: str) -> str:
    # The generation prompt ends with "ASSISTANT:"-like text; the answer follows after one space.
    return " " + response.strip()


def encode_pair(tokenizer, prompt: str | Sequence[dict], response: str, max_length: int = 512,
                max_prompt_length: int | None = None) -> dict:
    """Token ids of prompt + response + eos and where the response starts.

    The prompt keeps its *last* `max_prompt_length` tokens (the question is at the end); the response is cut
    to fit `max_length`. Returns {"input_ids": list[int], "prompt_len": int}.
    """
    p_ids = tokenizer(prompt_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response_text(response), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    max_prompt_length = max_prompt_length or max_length // 2
    if len(p_ids) > max_prompt_length:
        p_ids = p_ids[-max_prompt_length:]
    r_ids = r_ids[: max(1, max_length - len(p_ids))]
    return {"input_ids": p_ids + r_ids, "prompt_len": len(p_ids)}


def encode_prompt(tokenizer, prompt: str | Sequence[dict], max_prompt_length: int = 512) -> list[int]:
    ids = tokenizer(prompt_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    return ids[-max_prompt_length:]
