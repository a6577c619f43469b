"""`safealign compare`: the alignment methods side by side on the same data, judges and seeds.

For each seed (`RunLayout.compare_seed`: its own data split, tiny-base initialisation, SFT warm-up and judges,
made by the pipeline's first stages) every method trains on the same prepared data and precompute cache and is
evaluated on the held-out test prompts by the same judge. Per method and over seeds: safety (1 − harmful
compliance), over-refusal (borderline benign prompts, trade-off world) and helpfulness, each a mean with a 95%
interval over seeds; `compare.json`, `compare.md` and `compare.png` (safety vs helpfulness, Pareto front).

Modules: `config` (section `compare`), `methods` (each method = an algorithm and its settings), `aggregate`
(pure: seeds -> means and intervals, the table, the plot), `run` (`run_compare`, the command).
"""
