"""The toy safety world, on the ground floor (of safealign it imports only `errors`): a generator of
preference rows in the PKU-SafeRLHF 2024 schema (`generator`), its vocabulary (`content`, `vocabulary.yaml`)
and its ground-truth judge (`judge`). The data stage generates it, the tiny model's tokenizer is trained on
it, and the evaluation judges generated answers with it.
"""

from .content import SOURCE, Task, categories
from .generator import generate_toy_world, toy_corpus, toy_prompts, toy_responses
from .judge import ToyJudge

TOY_CATEGORIES: list[str] = list(categories())

__all__ = ["SOURCE", "TOY_CATEGORIES", "Task", "ToyJudge", "generate_toy_world", "toy_corpus", "toy_prompts",
           "toy_responses"]
