"""The compared methods: each one `dpo.algorithm` with the settings that make it that method.

Everything else (β, λ_init, λ_lr, the constraint and its threshold, the learning rate, the length of training)
is the config's `dpo` section, the same for every method.
"""

from __future__ import annotations

METHODS: dict[str, dict] = {
    "dpo_helpful": {"algorithm": "dpo"},  # DPO on the helpful labels only
    "dpo_safe": {"algorithm": "dpo_safe"},  # DPO on the safety labels only
    "safedpo": {"algorithm": "safedpo"},  # SafeDPO (Kim et al. 2026): labels only, no judge
    "safe_dpo_fixed_lambda": {"algorithm": "safe_dpo", "lambda_lr": 0.0},  # λ stays lambda_init
    "safe_dpo": {"algorithm": "safe_dpo"},  # dual λ, fixed β
    "safe_mm_dpo": {"algorithm": "safe_mm_dpo"},  # dual λ, dynamic β, batch J_C
    "safe_mm_dpo_on_policy": {"algorithm": "safe_mm_dpo", "jc_estimator": "on_policy"},
    "safe_mm_dpo_per_category": {"algorithm": "safe_mm_dpo", "constraints": "per_category"},
}


def method_config(cfg, name: str):
    """The config that trains method `name`: the run's config with the method's `dpo` settings."""
    return cfg.with_overrides([(f"dpo.{k}", v) for k, v in METHODS[name].items()])
