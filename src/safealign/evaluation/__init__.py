"""Evaluation: how safe, how helpful and how costly a model is, and the report that puts models side by side.

`run.evaluate_model` is the one public entry (pipeline, sweep and distillation call it); prompts come from
`prompts` (a prepared split through the run layout, a file or a Hub set), judges from `judges`, answers from
the shared generation layer. `efficiency` measures speed and memory; `report` gathers every results folder.
"""
