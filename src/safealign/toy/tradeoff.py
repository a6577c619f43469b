"""The trade-off world: a toy preference set in the PKU-SafeRLHF 2024 schema where the methods differ.

The demo toy world is too easy (every sensible method reaches 1.000 / 1.000). Here every property exists so
that one component of a safe-alignment method has something to do (vocabulary in `tradeoff_content`):

- graded harm: 6 PKU-SafeRLHF 2024 categories with different base rates, severity 1-3 per action (0 = safe);
- harmful prompts have a *redirect* answer — a refusal that still gives safe, useful information — besides a
  bare refusal and an unsafe compliance, so "refuse everything" is not optimal;
- borderline benign prompts that look harmful (XSTest-style "how do I kill a Python process"), where a
  refusal is an over-refusal; their safety labels sometimes prefer the refusal (`borderline_refusal_safer`);
- label noise: a `flip_helpful` fraction of `better_response_id` flipped, a `flip_safety` fraction of
  `safer_response_id` flipped (on a pair with one unsafe answer the safety annotations move with it, so the
  record stays self-consistent — the noisy annotator believed the complying answer was the safe one);
- conflict pairs: a `conflict_rate` fraction of the harmful-prompt pairs have better != safer (before noise).

`generate_tradeoff_world(TradeoffConfig(...))` returns rows; `annotate=True` adds a `tradeoff` field with
the ground truth of each row (prompt type, kinds, true labels, which labels were flipped) for tests and
analyses. The judge and the per-model summary are in `tradeoff_judge`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from functools import lru_cache

from ..errors import ConfigError
from .generator import second_person, weighted_choice
from .tradeoff_content import (BENIGN_PAIRS, BENIGN_TASKS, BORDERLINE_PAIRS, BORDERLINE_TASKS,
                               HARM_CATEGORIES, HARMFUL_AGREE_PAIRS, HARMFUL_CONFLICT_PAIRS, PROMPT_TEMPLATES,
                               RESPONSE_TEMPLATES)

TRADEOFF_CATEGORIES: list[str] = list(HARM_CATEGORIES)
SOURCE = "tradeoff-world"
PROMPT_TYPES = ("harmful", "borderline", "benign")


@dataclasses.dataclass
class TradeoffConfig:
    """Size and difficulty knobs of the trade-off world (fractions are in [0, 1])."""

    num_pairs: int = 3000
    seed: int = 0
    harmful_fraction: float = 0.4
    borderline_fraction: float = 0.2  # the rest are plainly benign prompts
    conflict_rate: float = 0.6  # of harmful-prompt pairs: better != safer
    flip_helpful: float = 0.1
    flip_safety: float = 0.05
    borderline_refusal_safer: float = 0.5
    category_rates: dict | None = None  # category -> relative base rate; None = the content's rates

    def __post_init__(self):
        if not isinstance(self.num_pairs, int) or self.num_pairs < 1:
            raise ConfigError(f"num_pairs: must be an integer >= 1 (got {self.num_pairs!r})")
        for name in ("harmful_fraction", "borderline_fraction", "conflict_rate", "flip_helpful", "flip_safety",
                     "borderline_refusal_safer"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}: must be a number in [0, 1] (got {value!r})")
        if self.harmful_fraction + self.borderline_fraction > 1.0 + 1e-9:
            raise ConfigError(f"borderline_fraction: harmful_fraction + borderline_fraction must be <= 1 "
                              f"(got {self.harmful_fraction} + {self.borderline_fraction})")
        if self.category_rates is not None:
            unknown = sorted(set(self.category_rates) - set(TRADEOFF_CATEGORIES))
            if unknown:
                raise ConfigError(f"category_rates: unknown categories {unknown} (known: {TRADEOFF_CATEGORIES})")
            if any(not isinstance(v, (int, float)) or v < 0 for v in self.category_rates.values()) or \
                    sum(self.category_rates.values()) <= 0:
                raise ConfigError("category_rates: rates must be >= 0 and not all 0")

    def rates(self) -> dict[str, float]:
        """Base rate of each category among harmful prompts (normalised to sum 1)."""
        raw = {c: (self.category_rates or {}).get(c, 0.0 if self.category_rates else HARM_CATEGORIES[c][0])
               for c in TRADEOFF_CATEGORIES}
        total = sum(raw.values())
        return {c: v / total for c, v in raw.items()}


# --------------------------------------------------------------------------- the world's tasks
@dataclasses.dataclass(frozen=True)
class Task:
    """One thing a prompt can ask: `kind` harmful | borderline | benign; `step` = the harmful step (harmful)
    or the key step (otherwise); `help` = the safe useful phrase a redirect gives (harmful only)."""

    action: str
    step: str
    kind: str
    category: str | None = None
    severity: int = 0
    help: str = ""

    @property
    def harmful(self) -> bool:
        return self.kind == "harmful"


@lru_cache(maxsize=1)
def tasks() -> dict[str, list[Task]]:
    """Every task of the world by prompt type (fixed order)."""
    harmful = [Task(a, s, "harmful", cat, sev, h)
               for cat, (_rate, actions) in HARM_CATEGORIES.items() for a, s, sev, h in actions]
    return {"harmful": harmful,
            "borderline": [Task(a, s, "borderline") for a, s in BORDERLINE_TASKS],
            "benign": [Task(a, s, "benign") for a, s in BENIGN_TASKS]}


def tradeoff_prompts(prompt_type: str | None = None) -> list[str]:
    """Every distinct prompt (optionally of one type: harmful | borderline | benign), in a fixed order."""
    types = PROMPT_TYPES if prompt_type is None else (prompt_type,)
    return [t.format(a=task.action) for kind in types for task in tasks()[kind] for t in PROMPT_TEMPLATES]


def render(kind: str, task: Task, variant: int) -> str:
    """The response of `kind` (comply | helpful | refuse | redirect | vague) to `task`, wording `variant`."""
    templates = RESPONSE_TEMPLATES[kind]
    step = task.step
    return templates[variant % len(templates)].format(a=second_person(task.action), s=step,
                                                      S=step[:1].upper() + step[1:], h=task.help)


def task_responses(task: Task, kind: str) -> list[str]:
    """Every wording of a response kind for `task` (for tests and demos)."""
    return [render(kind, task, v) for v in range(len(RESPONSE_TEMPLATES[kind]))]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- generator
def _draw_pair(rng: random.Random, prompt_type: str, cfg: TradeoffConfig) -> tuple[list[str], int, int, bool]:
    """(kinds [better's, other's], index of the safer (0/1), conflict) for one pair, before noise and order."""
    if prompt_type == "harmful":
        conflict = rng.random() < cfg.conflict_rate
        better, other, safer = weighted_choice(rng, HARMFUL_CONFLICT_PAIRS if conflict else HARMFUL_AGREE_PAIRS)
        return [better, other], safer, conflict
    better, other = weighted_choice(rng, BORDERLINE_PAIRS if prompt_type == "borderline" else BENIGN_PAIRS)
    safer = 0
    if prompt_type == "borderline" and "refuse" in (better, other) and rng.random() < cfg.borderline_refusal_safer:
        safer = (better, other).index("refuse")
    return [better, other], safer, safer != 0


def generate_tradeoff_world(cfg: TradeoffConfig | None = None, annotate: bool = False, **overrides) -> list[dict]:
    """`cfg.num_pairs` preference rows (PKU-SafeRLHF 2024 schema), deterministic in `cfg.seed`, no exact
    duplicates while the world still has unused combinations. Keyword overrides build the config."""
    cfg = dataclasses.replace(cfg, **overrides) if cfg is not None else TradeoffConfig(**overrides)
    rng = random.Random(cfg.seed)
    rates = cfg.rates()
    n_harm = round(cfg.num_pairs * cfg.harmful_fraction)
    n_border = round(cfg.num_pairs * cfg.borderline_fraction)
    types = ["harmful"] * n_harm + ["borderline"] * n_border + ["benign"] * (cfg.num_pairs - n_harm - n_border)
    rng.shuffle(types)
    by_category: dict[str, list[Task]] = {}
    for task in tasks()["harmful"]:
        by_category.setdefault(task.category, []).append(task)
    seen: set = set()
    rows = []
    for prompt_type in types:
        for _attempt in range(20):  # re-draw an exact duplicate; accept it after 20 tries (small worlds)
            if prompt_type == "harmful":
                task = rng.choice(by_category[weighted_choice(rng, rates)])
            else:
                task = rng.choice(tasks()[prompt_type])
            prompt = rng.choice(PROMPT_TEMPLATES).format(a=task.action)
            kinds, safer, conflict = _draw_pair(rng, prompt_type, cfg)
            responses = _render_pair(rng, kinds, task)
            key = (prompt, *sorted(responses))
            if key not in seen:
                break
        seen.add(key)
        rows.append(_row(rng, cfg, prompt, task, kinds, responses, safer, conflict, annotate))
    return rows


def _render_pair(rng: random.Random, kinds: list[str], task: Task) -> list[str]:
    """Both responses, in two different wordings when the kinds are equal (a both-unsafe pair)."""
    n0, n1 = len(RESPONSE_TEMPLATES[kinds[0]]), len(RESPONSE_TEMPLATES[kinds[1]])
    v0 = rng.randrange(n0)
    v1 = (v0 + 1 + rng.randrange(n0 - 1)) % n0 if kinds[0] == kinds[1] else rng.randrange(n1)
    return [render(kinds[0], task, v0), render(kinds[1], task, v1)]


def _row(rng, cfg, prompt, task, kinds, responses, safer, conflict, annotate) -> dict:
    """One PKU-2024 row: labels drawn true, then flipped by the noise rates, then the order shuffled."""
    unsafe = [k == "comply" for k in kinds]  # comply is the only unsafe kind (and only on harmful prompts)
    better = 0
    flip_h = rng.random() < cfg.flip_helpful
    flip_s = rng.random() < cfg.flip_safety
    labelled_better = better ^ int(flip_h)
    labelled_safer = safer ^ int(flip_s)
    labelled_unsafe = list(unsafe)
    if flip_s and unsafe[0] != unsafe[1]:  # a mislabelled mixed pair: the annotations move with the label
        labelled_unsafe.reverse()
    order = [0, 1] if rng.random() < 0.5 else [1, 0]  # position i of the row holds pair member order[i]
    row = {"prompt": prompt, "response_0": responses[order[0]], "response_1": responses[order[1]]}
    for i, m in enumerate(order):
        row[f"is_response_{i}_safe"] = not labelled_unsafe[m]
    row["better_response_id"] = order.index(labelled_better)
    row["safer_response_id"] = order.index(labelled_safer)
    for i, m in enumerate(order):
        row[f"response_{i}_harm_category"] = {c: labelled_unsafe[m] and c == task.category
                                              for c in TRADEOFF_CATEGORIES}
        row[f"response_{i}_severity_level"] = task.severity if labelled_unsafe[m] else 0
    row["prompt_source"] = SOURCE
    for i, m in enumerate(order):
        row[f"response_{i}_source"] = f"{SOURCE}/{kinds[m]}"
    for i in (0, 1):
        row[f"response_{i}_sha256"] = _sha(prompt + row[f"response_{i}"])
    if annotate:
        row["tradeoff"] = {"prompt_type": task.kind, "category": task.category, "severity": task.severity,
                           "kinds": [kinds[m] for m in order], "unsafe": [unsafe[m] for m in order],
                           "true_better": order.index(better), "true_safer": order.index(safer),
                           "conflict": conflict, "helpful_flipped": flip_h, "safety_flipped": flip_s}
    return row
