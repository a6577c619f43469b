"""`safealign pipeline`: every stage in order, in one run directory, resumably.

prepare -> base (tiny model build) -> sft (optional warm-up) -> helpful_rm -> harmless_rm -> dpo (precompute
inside) -> dpo_<algo> for each ablation -> evaluate_<model> -> distill + evaluate_distilled (optional) -> report

Split by job: `config` (section `pipeline`), `plan` (the stages of a config: each a call of its module's public
entry point, every path from `RunLayout`; `--from`/`--only` selection), `launch` (a training stage in a child
process, for multi-GPU launchers), `runner` (`run_pipeline`: skip/resume decisions against `run.json`, the
summary, the command). This file imports nothing, so reading the `pipeline` config section stays cheap.
"""
