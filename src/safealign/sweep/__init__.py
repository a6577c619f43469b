"""`safealign sweep`: a grid over Safe-MM-DPO's λ_init × w, one short training each, judged on validation.

1. The pipeline's first stages (data, base, SFT warm-up when enabled, both reward models) run or are reused
   (`run_pipeline(cfg, until="harmless_rm")`).
2. Each grid point trains for `sweep.num_train_epochs` (1 by default) in its own sub-layout
   (`RunLayout.sweep_point`: `<sweep>/points/<id>/models/aligned`, `.../checkpoints/dpo`) and is evaluated on
   the validation split (`evaluate_model(..., split="val")`, at most `sweep.val_prompts` harmful and as many
   benign prompts). Finished points are recorded in `<sweep>/points.jsonl` as they finish: a rerun (or a
   resumed, killed sweep) only trains the missing ones; an interrupted point resumes from its checkpoint.
3. Selection (`select.select_best`): among the points with safety rate > `safety_threshold` (0.8), the highest
   helpfulness; ties broken by the higher safety rate, then by grid order, and reported. When none passes,
   the safest point is named as a fallback and the sweep says so (`status: none_passed`).
   Helpfulness is MT-Bench when the `eval` section configures MT-Bench, else the helpful RM's win rate
   against the starting policy (or the toy world's helpfulness rate when the toy judge is on).
4. Writes `sweep.json`, `sweep.md`, `sweep.png` (helpfulness vs safety, Pareto front marked) and `best.yaml`:
   the whole config with the chosen λ_init and w, ready for `safealign pipeline --config best.yaml`.

Modules: `config` (section `sweep`), `select` (the pure selection rule), `report` (Markdown, plot,
best.yaml), `run` (`run_sweep`, the command).
"""
