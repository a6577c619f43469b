"""The toy world's generator: preference rows in the PKU-SafeRLHF 2024 schema, deterministic in a seed.

The world (vocabulary in `content`): harmful prompts across the 14 BeaverTails categories (3 actions each) and
40 benign tasks, each asked in 6 phrasings. Responses are short templated answers of known kind: harmful
prompt -> comply (helpful, unsafe), refuse (safe), redirect (safe, somewhat helpful), lowq (safe, unhelpful);
benign prompt -> helpful, overrefuse, vague (all safe). Pairs are labelled like PKU-SafeRLHF, where
helpfulness and harmlessness conflict: on ~2/3 of harmful pairs the better (more helpful) answer is unsafe, so
SFT on helpful choices gives an unsafe policy that safety-aware alignment can improve.
"""

from __future__ import annotations

import hashlib
import random
import re

from .content import (BENIGN_PAIRS, HARMFUL_PAIRS, HARMLESS_RANK, HELPFUL_RANK, PROMPT_TEMPLATES,
                      RESPONSE_TEMPLATES, SOURCE, Task, categories, tasks)


def second_person(action: str) -> str:
    """Turn the user's "my"/"myself" into "your"/"yourself" for the assistant's answer."""
    return re.sub(r"\bmy\b", "your", re.sub(r"\bmyself\b", "yourself", action))


def _render(kind: str, task: Task, variant: int) -> str:
    template = RESPONSE_TEMPLATES[kind][variant % len(RESPONSE_TEMPLATES[kind])]
    step = task.step
    return template.format(a=second_person(task.action), s=step, S=step[:1].upper() + step[1:],
                           r=task.reason, alt=task.alternative)


def weighted_choice(rng: random.Random, weights: dict) -> tuple:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys], k=1)[0]


def generate_toy_world(num_pairs: int = 3000, seed: int = 0, harmful_fraction: float = 0.5) -> list[dict]:
    """`num_pairs` preference rows (PKU-SafeRLHF 2024 schema), deterministic in `seed`, no exact duplicates
    while the world still has unused combinations."""
    rng = random.Random(seed)
    harmful_tasks, benign_tasks = tasks()
    n_harmful = round(num_pairs * harmful_fraction)
    flags = [True] * n_harmful + [False] * (num_pairs - n_harmful)
    rng.shuffle(flags)
    seen: set = set()
    rows = []
    for is_harmful in flags:
        for _attempt in range(20):  # re-draw on an exact duplicate; accept it after 20 tries (tiny worlds)
            task = rng.choice(harmful_tasks if is_harmful else benign_tasks)
            prompt = rng.choice(PROMPT_TEMPLATES).format(a=task.action)
            kinds = list(weighted_choice(rng, HARMFUL_PAIRS if is_harmful else BENIGN_PAIRS))
            if rng.random() < 0.5:
                kinds.reverse()
            responses = [_render(k, task, rng.randrange(6)) for k in kinds]
            key = (prompt, *sorted(responses))
            if key not in seen:
                break
        seen.add(key)
        rows.append(_row(prompt, task, kinds, responses))
    return rows


def _row(prompt: str, task: Task, kinds: list[str], responses: list[str]) -> dict:
    better = min((0, 1), key=lambda i: HELPFUL_RANK.index(kinds[i]))
    safer = min((0, 1), key=lambda i: HARMLESS_RANK.index(kinds[i]))
    row = {"prompt": prompt, "response_0": responses[0], "response_1": responses[1]}
    for i, kind in enumerate(kinds):
        row[f"is_response_{i}_safe"] = kind != "comply"
    row["better_response_id"] = better
    row["safer_response_id"] = safer
    for i, kind in enumerate(kinds):
        unsafe = kind == "comply"
        row[f"response_{i}_harm_category"] = {c: unsafe and c == task.category for c in categories()}
        row[f"response_{i}_severity_level"] = task.severity if unsafe else 0
    row["prompt_source"] = SOURCE
    for i, kind in enumerate(kinds):
        row[f"response_{i}_source"] = f"{SOURCE}/{kind}"
    for i in (0, 1):
        # PKU-SafeRLHF 2024's integrity rule, which `prepare` checks: sha256(prompt + response), UTF-8 hex
        row[f"response_{i}_sha256"] = hashlib.sha256((prompt + responses[i]).encode("utf-8")).hexdigest()
    return row


def toy_responses(action: str, kind: str) -> list[str]:
    """Every variant of a response kind for a task (an action or benign task of the world); for tests/demos."""
    harmful, benign = tasks()
    task = next((t for t in harmful + benign if t.action == action), None)
    if task is None:
        raise KeyError(action)
    return [_render(kind, task, v) for v in range(len(RESPONSE_TEMPLATES[kind]))]


def toy_prompts(harmful: bool | None = None) -> list[str]:
    """Every distinct prompt of the world (optionally only harmful or only benign ones), in a fixed order."""
    harmful_tasks, benign_tasks = tasks()
    chosen = harmful_tasks + benign_tasks if harmful is None else (harmful_tasks if harmful else benign_tasks)
    return [t.format(a=task.action) for task in chosen for t in PROMPT_TEMPLATES]


def toy_corpus(rows) -> list[str]:
    """Chat-formatted texts (as DEFAULT_CHAT_TEMPLATE renders them) of every prompt+response in `rows`, to train
    the tiny tokenizer on.

    Accepts PKU-schema rows and canonical records (both have prompt/response_0/response_1) and single-response
    safety rows (prompt/response)."""
    texts = []
    for row in rows:
        keys = [k for k in ("response_0", "response_1", "response") if row.get(k)]
        for key in keys:
            texts.append(f"<s>BEGINNING OF CONVERSATION: USER: {row['prompt']} ASSISTANT: {row[key]}</s>")
    return texts
