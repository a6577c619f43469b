"""The fixed vocabulary of the trade-off world: categories, tasks, their key phrases and response templates.

The phrases themselves are data, in `tradeoff_vocabulary.yaml` beside this file; this module reads them and
holds the pair-type weights that make the labels.

Kept small and templated (like the demo toy world) so a 2-layer model with a ~2000-token BPE vocabulary can
learn it in minutes. Every harmful action carries three phrases: the *harmful step* (the unsafe content the
judge looks for; toy-level and vague on purpose, never usable instructions), its *severity* (1-3, PKU-SafeRLHF
2024 levels) and a *safe help* phrase — the useful, safe information a redirect answer gives, so a harmful
prompt has an answer that is both safe and helpful. Borderline prompts (XSTest-style) use trigger words
("kill", "shoot", "crack", ...) for harmless tasks; a refusal there is an over-refusal.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .content import PROMPT_TEMPLATES as BASE_PROMPT_TEMPLATES

VOCABULARY = Path(__file__).with_name("tradeoff_vocabulary.yaml")
_VOCAB = yaml.safe_load(VOCABULARY.read_text(encoding="utf-8"))

# category -> (base rate among harmful prompts, [(action, harmful step, severity, safe help)]), in file order
# (the generator's draws depend on it).
HARM_CATEGORIES: dict[str, tuple[float, list[tuple[str, str, int, str]]]] = {
    category: (spec["rate"], [(a["action"], a["harmful_step"], a["severity"], a["safe_help"])
                              for a in spec["actions"]])
    for category, spec in _VOCAB["harmful"].items()}
BORDERLINE_TASKS: list[tuple[str, str]] = list(_VOCAB["borderline"].items())
BENIGN_TASKS: list[tuple[str, str]] = list(_VOCAB["benign"].items())
# The demo world's six phrasings and six more: 12 per task.
PROMPT_TEMPLATES: list[str] = BASE_PROMPT_TEMPLATES + _VOCAB["extra_prompt_templates"]
# `refuse` is the bare refusal on every kind of prompt (on a benign prompt it is an over-refusal).
RESPONSE_TEMPLATES: dict[str, list[str]] = _VOCAB["response_templates"]

# Pair types of a harmful prompt: (kind of the better, kind of the other, which is safer: 0 = the better one,
# 1 = the other) -> weight. A *conflict* pair has better != safer. The draw first decides conflict or not
# (`conflict_rate`), then picks a type of that group by weight.
HARMFUL_CONFLICT_PAIRS: dict[tuple[str, str, int], float] = {
    ("comply", "refuse", 1): 0.40,    # the annotator preferred the complying answer
    ("comply", "redirect", 1): 0.30,
    ("comply", "vague", 1): 0.15,
    ("redirect", "refuse", 1): 0.15,  # both safe; the safety label prefers the bare refusal
}
HARMFUL_AGREE_PAIRS: dict[tuple[str, str, int], float] = {
    ("refuse", "comply", 0): 0.25,    # the annotator preferred the safe answer
    ("redirect", "comply", 0): 0.30,
    ("redirect", "vague", 0): 0.15,
    ("refuse", "vague", 0): 0.10,
    ("comply", "comply", 0): 0.20,    # both unsafe (two wordings): SafeDPO drops these
}
# Benign and borderline prompts: (kind of the better, kind of the other) -> weight; both answers are safe.
# The safety label prefers the better answer, except on borderline prompts, where in a
# `borderline_refusal_safer` fraction of the pairs holding a refusal it prefers the refusal (annotators fooled
# by the trigger words): that is what teaches a safety-only method to over-refuse.
BORDERLINE_PAIRS: dict[tuple[str, str], float] = {("helpful", "refuse"): 0.6, ("helpful", "vague"): 0.25,
                                                  ("vague", "refuse"): 0.15}
BENIGN_PAIRS: dict[tuple[str, str], float] = {("helpful", "refuse"): 0.5, ("helpful", "vague"): 0.5}
