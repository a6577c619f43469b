"""Config section `eval`: which prompts, which judges, how to generate, where MT-Bench lives."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..errors import ConfigError

JUDGES = ("toy", "tradeoff", "cost-model", "moderation-model", "llm", "refusal")


@dataclasses.dataclass
class EvalConfig:
    """Settings of `safealign evaluate` / `safealign report`.

    The default judge is `toy` (the toy world's ground truth), so the offline demo needs nothing else; a real
    run sets `judge: cost-model` (the trained harmless cost model), `moderation-model` (Llama Guard) or `llm`
    (any OpenAI-compatible endpoint). API keys are read from the environment variable *named* by
    `*_api_key_env`; the key itself is never stored or logged.
    """

    # ---- safety prompts and judge
    # "test_split" (harmful prompts of the prepared split being evaluated: `test`, or the sweep's `val`); a
    # benchmark name (beavertails-eval, harmbench, advbench, strongreject, donotanswer) read from
    # `safety_prompts_dir`, or a local .jsonl/.json/.csv/.parquet/.txt file (evaluation/benchmarks.py; several
    # comma-separated); else a Hub id such as "PKU-Alignment/BeaverTails-Evaluation".
    safety_prompts: str = "test_split"
    safety_prompts_split: str = "test"  # Hub split when safety_prompts is a Hub id
    safety_prompts_dir: str | None = None  # the benchmarks' folder, laid out as docs/evaluation.md says
    prompt_field: str | None = None  # column holding the prompt in a local file (default: prompt, Behavior, ...)
    category_field: str | None = None  # column holding the category (default: category, SemanticCategory, ...)
    # Benign prompts whose refusal rate is reported (over_refusal.json): alpaca-benign, test_split, files
    over_refusal_prompts: str | None = None
    max_over_refusal_prompts: int | None = 200
    max_safety_prompts: int | None = 500
    judge: Literal["toy", "tradeoff", "cost-model", "moderation-model", "llm", "refusal"] = "toy"
    # More judges scored on the same answers (e.g. [cost-model] next to toy): written to safety.json's
    # `by_judge` block; `judge` alone sets the headline safety rate.
    extra_judges: list[str] = dataclasses.field(default_factory=list)
    # The cost-model judge reads the run's cost model (`reward.harmless_rm_path` to use another one).
    cost_model_cutoff: float = 0.0  # unsafe when cost > cutoff
    moderation_model: str = "meta-llama/Llama-Guard-3-1B"
    llm_judge_base_url: str = "https://api.openai.com/v1"
    llm_judge_model: str = "gpt-4o-mini"
    llm_judge_api_key_env: str = "OPENAI_API_KEY"
    failure_samples: int = 20  # failures shown in failures.md (all go to failures.jsonl)

    # ---- generation (safety + helpfulness prompts)
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16
    backend: Literal["auto", "hf", "vllm"] = "auto"

    # ---- helpfulness on the benign prompts of the test split
    helpfulness: bool = True
    # auto: the toy (trade-off) judge's is_helpful when judge is toy (tradeoff), else the run's helpful RM when
    # it exists
    # (`reward.helpful_rm_path` or the one the run trains): mean score and win-rate against the run's base
    # policy (the layout's rule: the SFT warm-up when enabled, else the base model).
    helpfulness_judge: Literal["auto", "toy", "tradeoff", "helpful-rm"] = "auto"
    max_helpful_prompts: int | None = 500

    # ---- LLM judges over HTTP (the `llm` safety judge and the MT-Bench grader)
    judge_concurrency: int = 8
    judge_max_retries: int = 6
    judge_timeout: float = 120.0  # seconds per judge request

    # ---- MT-Bench (FastChat formats)
    mt_bench_questions: str | None = None  # question.jsonl path or a Hub dataset id; None: MT-Bench skipped
    mt_bench_questions_split: str = "train"
    mt_bench_judge_prompts: str | None = None  # judge_prompts.jsonl
    mt_bench_reference_answers: str | None = None  # reference_answer/gpt-4.jsonl
    mt_bench_judge_model: str = "gpt-4"
    mt_bench_judge_base_url: str = "https://api.openai.com/v1"
    mt_bench_api_key_env: str = "OPENAI_API_KEY"
    mt_bench_max_new_tokens: int = 1024
    mt_bench_max_questions: int | None = None
    mt_bench_judge_max_tokens: int = 2048

    def __post_init__(self):
        if self.judge not in JUDGES:
            raise ConfigError(f"judge: must be one of {', '.join(JUDGES)} (got {self.judge!r})")
        for j in self.extra_judges:
            if j not in JUDGES:
                raise ConfigError(f"extra_judges: unknown judge {j!r}; use {', '.join(JUDGES)}")
        if self.helpfulness_judge not in ("auto", "toy", "tradeoff", "helpful-rm"):
            raise ConfigError(f"helpfulness_judge: must be auto, toy, tradeoff or helpful-rm "
                              f"(got {self.helpfulness_judge!r})")
        for name in ("max_safety_prompts", "max_helpful_prompts", "mt_bench_max_questions",
                     "max_over_refusal_prompts"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"{name}: must be > 0 or null (got {v})")
        for name in ("max_new_tokens", "batch_size", "mt_bench_max_new_tokens", "judge_concurrency",
                     "mt_bench_judge_max_tokens"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0 (got {getattr(self, name)})")
        if self.judge_max_retries < 0:
            raise ConfigError(f"judge_max_retries: must be >= 0 (got {self.judge_max_retries})")
        if self.failure_samples < 0:
            raise ConfigError(f"failure_samples: must be >= 0 (got {self.failure_samples})")
        if self.temperature < 0:
            raise ConfigError(f"temperature: must be >= 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1] (got {self.top_p})")
        if self.judge_timeout <= 0:
            raise ConfigError(f"judge_timeout: must be > 0 (got {self.judge_timeout})")
        for name in ("llm_judge_api_key_env", "mt_bench_api_key_env"):
            v = getattr(self, name)
            # A value that looks like a key (not an env-var name) would end up in config.yaml: refuse it.
            if v and (v.startswith("sk-") or not v.replace("_", "").isalnum()):
                raise ConfigError(f"{name}: must be the NAME of an environment variable, e.g. OPENAI_API_KEY "
                                  f"(got something else)")
