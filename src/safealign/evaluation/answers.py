"""The one way an evaluation answers its prompts: the run's generation settings (`eval` section), the model's
results-folder cache, statistics. Safety, over-refusal and helpfulness all call `answer_prompts`, so the three
answer a prompt the same way and share one cache file."""

from __future__ import annotations

from pathlib import Path

from ..generation import GenerationStats, generate_with_stats


def answer_prompts(cfg, model_path, prompts: list, cache_path: Path, desc: str,
                   chat_template: str | None = None) -> tuple[list[str], GenerationStats]:
    """Answers of `model_path` to `prompts` with the `eval` section's sampling settings, cached at `cache_path`
    (`layout.generation_cache(<results>/<model>)`)."""
    return generate_with_stats(
        model_path, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        seed=cfg.seed, batch_size=cfg.batch_size, cache_path=cache_path, backend=cfg.backend,
        desc=desc, chat_template=chat_template)
