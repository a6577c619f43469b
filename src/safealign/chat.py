"""Chat formatting shared by every stage, so (prompt, response) is tokenized the same way when a reward
model is trained, when it scores, when the policy is trained and when it generates.

`encode_pair` gives the response-token boundary exactly, which the DPO log-probabilities and the
response-only SFT loss both need, and the response ids are those of the whole text (what a generating model
emits after the prompt; tested with the real Mistral tokenizer in tests/test_real_tokenizer.py).
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

    The prompt keeps its *last* `max_prompt_length` tokens (the question is at the end) behind its BOS; the
    response is cut to fit `max_length` (a cut response has no eos). Returns {"input_ids", "prompt_len"}.
    """
    p_text = prompt_text(tokenizer, prompt)
    p_ids = tokenizer(p_text, add_special_tokens=False)["input_ids"]
    r_ids = _response_ids(tokenizer, p_text, p_ids, response) + [tokenizer.eos_token_id]
    p_ids = keep_prompt_end(p_ids, max_prompt_length or max_length // 2, tokenizer.bos_token_id)
    r_ids = r_ids[: max(1, max_length - len(p_ids))]
    return {"input_ids": p_ids + r_ids, "prompt_len": len(p_ids)}


def encode_prompt(tokenizer, prompt: str | Sequence[dict], max_prompt_length: int = 512) -> list[int]:
    ids = tokenizer(prompt_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    return keep_prompt_end(ids, max_prompt_length, tokenizer.bos_token_id)


def _response_ids(tokenizer, p_text: str, p_ids: list[int], response: str) -> list[int]:
    """The response's ids as they come out of tokenizing prompt + response as ONE text, which is what a model
    that generated the answer after the prompt produced. SentencePiece tokenizers (Mistral, Llama) would add a
    stray "▁" token (id 28705 for Mistral) at the start of a response tokenized on its own. When the prompt's
    ids are not a prefix of the whole text's (a merge across the boundary), the response is tokenized alone."""
    whole = tokenizer(p_text + response_text(response), add_special_tokens=False)["input_ids"]
    if whole[: len(p_ids)] == p_ids and len(whole) > len(p_ids):
        return whole[len(p_ids):]
    return tokenizer(response_text(response), add_special_tokens=False)["input_ids"]


def keep_prompt_end(ids: list[int], max_len: int, bos_id: int | None = None) -> list[int]:
    """The last `max_len` prompt ids (the question and the generation prompt are at the end); a leading BOS
    is kept in front, since every model saw it at position 0 in training."""
    if len(ids) <= max_len:
        return ids
    if bos_id is not None and ids and ids[0] == bos_id and max_len > 1:
        return [bos_id] + ids[len(ids) - max_len + 1:]
    return ids[len(ids) - max_len:]
