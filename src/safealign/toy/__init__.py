"""The toy safety worlds, on the ground floor (of safealign they import only `errors`): a generator of
preference rows in the PKU-SafeRLHF 2024 schema (`generator`), its vocabulary (`content`, `vocabulary.yaml`)
and its ground-truth judge (`judge`); beside it the harder trade-off world (`tradeoff`, `tradeoff_content`,
`tradeoff_judge`), where the safe-alignment methods differ. The data stage generates them, the tiny
model's tokenizer is trained on them, and the evaluation judges generated answers with them.
"""

from .config import WORLDS, ToyWorldConfig
from .content import SOURCE, Task, categories
from .generator import generate_toy_world, toy_corpus, toy_prompts, toy_responses
from .judge import ToyJudge
from .tradeoff import SOURCE as TRADEOFF_SOURCE
from .tradeoff import generate_tradeoff_world
from .tradeoff_judge import TradeoffJudge

TOY_CATEGORIES: list[str] = list(categories())


def generate_world(world: str, toy: ToyWorldConfig | None = None) -> tuple[str, list[dict]]:
    """(source name, rows) of toy world `world` (toy | tradeoff) with the `toy` section's knobs."""
    kwargs = (toy or ToyWorldConfig()).world_kwargs(world)
    if world == "toy":
        return SOURCE, generate_toy_world(**kwargs)
    return TRADEOFF_SOURCE, generate_tradeoff_world(**kwargs)


__all__ = ["SOURCE", "TOY_CATEGORIES", "WORLDS", "Task", "ToyJudge", "ToyWorldConfig", "TradeoffJudge",
           "generate_toy_world", "generate_tradeoff_world", "generate_world", "toy_corpus", "toy_prompts",
           "toy_responses"]
