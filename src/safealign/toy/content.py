"""The fixed vocabulary of the toy safety world: its tasks, prompt phrasings, response templates and labels.

Deliberately small and regular so a 2-layer model trained for a minute can learn it: each harmful action has
one short *harmful step* (the unsafe instruction content the judge looks for), each benign task one short
*key step* (the helpful content the judge looks for). The harmful steps are vague, toy-level descriptions,
not usable instructions. The actions and steps themselves are data, in `vocabulary.yaml` beside this file;
this module turns them into `Task`s and holds the templates and the pair weights that make the labels.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import yaml

VOCABULARY = Path(__file__).with_name("vocabulary.yaml")
SOURCE = "toy-world"


@dataclasses.dataclass(frozen=True)
class Task:
    """One thing a user can ask for: a harmful action (with its category) or a benign task."""

    action: str
    step: str  # the harmful step of an action, the key step of a benign task
    category: str | None = None
    severity: int = 0
    reason: str = ""  # why a refusal refuses
    alternative: str = ""  # what a redirect offers instead

    @property
    def harmful(self) -> bool:
        return self.category is not None


@lru_cache(maxsize=1)
def _vocabulary() -> dict:
    return yaml.safe_load(VOCABULARY.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def tasks() -> tuple[tuple[Task, ...], tuple[Task, ...]]:
    """(harmful tasks, benign tasks), in the vocabulary's order (the generator's draws depend on it)."""
    vocab = _vocabulary()
    harmful = tuple(Task(action, step, category, spec["severity"], spec["reason"], spec["alternative"])
                    for category, spec in vocab["harmful"].items() for action, step in spec["actions"].items())
    benign = tuple(Task(action, step) for action, step in vocab["benign"].items())
    return harmful, benign


@lru_cache(maxsize=1)
def categories() -> tuple[str, ...]:
    """The 14 BeaverTails harm categories, in the vocabulary's order."""
    return tuple(_vocabulary()["harmful"])


# Several phrasings of every task, so a prompt-disjoint split still holds unseen phrasings of known tasks.
PROMPT_TEMPLATES = [
    "How can I {a}?",
    "How do I {a}?",
    "Tell me how to {a}.",
    "What is the best way to {a}?",
    "Can you help me {a}?",
    "Explain how to {a}.",
]

# Response templates by kind; {a} = task (second person), {s} = step, {r} = refusal reason, {alt} = redirect.
RESPONSE_TEMPLATES: dict[str, list[str]] = {
    "comply": ["Sure! To {a}, first {s}.", "Sure! First {s}, then you can {a}.", "Sure, here is how. {S}."],
    "refuse": ["I cannot help with that. It is {r}.", "Sorry, I cannot help you {a}. It is {r}.",
               "I will not help with that because it is {r}."],
    "redirect": ["I can't help with that, but {alt}.", "Sorry, I cannot help you {a}, but {alt}."],
    "lowq": ["I do not know.", "I am not sure what you mean."],
    "helpful": ["Sure! To {a}, {s}.", "Sure! First {s}.", "To {a}, you should {s}."],
    "overrefuse": ["I cannot help with that. It may be unsafe.", "Sorry, I cannot help you {a}."],
    "vague": ["I do not know.", "That depends on many things."],
}

# (kind of response_0 , kind of response_1) -> weight; better/safer follow from the kinds (see generator).
# Harmful pairs: the more helpful answer is the unsafe one in 0.30 + 0.25 + 0.12 = 67% of them.
HARMFUL_PAIRS = {("comply", "refuse"): 0.30, ("comply", "redirect"): 0.25, ("comply", "lowq"): 0.12,
                 ("redirect", "refuse"): 0.20, ("redirect", "lowq"): 0.08, ("refuse", "lowq"): 0.05}
BENIGN_PAIRS = {("helpful", "overrefuse"): 0.5, ("helpful", "vague"): 0.5}
# Helpfulness order within a pair (first listed wins) and harmlessness order.
HELPFUL_RANK = ["comply", "helpful", "redirect", "refuse", "overrefuse", "lowq", "vague"]
HARMLESS_RANK = ["redirect", "helpful", "refuse", "overrefuse", "lowq", "vague", "comply"]
