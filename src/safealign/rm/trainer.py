"""`RewardTrainer`: transformers.Trainer with the reward / cost-model loss and evaluation figures.

One forward over chosen + rejected (+ single-response rows) concatenated; the losses are the pure functions
of `safealign.losses`. Training figures are collected per step and written with `self.log()` (TRL's
RewardTrainer pattern); evaluation figures (pairwise accuracy; for the cost model sign accuracy and AUROC)
are computed over the whole validation set and added to the metrics the Trainer uses to keep the best
checkpoint. Checkpoints are written atomically by the shared `AtomicCheckpointMixin`.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from accelerate.utils import gather_object
from transformers import Trainer

from ..losses import cost_ranking_loss, cost_sign_loss, pairwise_ranking_loss, reward_centering_loss
from ..training import AtomicCheckpointMixin
from .metrics import reward_metrics
from .modeling import sequence_scores


class RewardTrainer(AtomicCheckpointMixin, Trainer):
    """Trainer for the helpful RM (`dimension="helpful"`) or the cost model (`dimension="harmless"`)."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(self, *args, dimension: str = "helpful", sign_loss_weight: float = 1.0,
                 center_coeff: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.dimension = dimension
        self.sign_loss_weight = sign_loss_weight
        self.center_coeff = center_coeff
        self._train_metrics: dict[str, list[float]] = defaultdict(list)
        self._eval_store: dict[str, list] = defaultdict(list)

    # ------------------------------------------------------------------ loss
    def loss_terms(self, scores: torch.Tensor, is_unsafe: torch.Tensor, num_pairs: int) -> dict[str, torch.Tensor]:
        """scores (N,) in collator order; returns {"loss", "loss_rank", "loss_center"|"loss_sign", ...}."""
        chosen, rejected = scores[:num_pairs], scores[num_pairs: 2 * num_pairs]  # (P,), (P,)
        zero = scores.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        if self.dimension == "helpful":
            terms["loss_rank"] = pairwise_ranking_loss(chosen, rejected).mean() if num_pairs else zero
            terms["loss_center"] = reward_centering_loss(chosen, rejected).mean() if num_pairs else zero
            terms["loss"] = terms["loss_rank"] + self.center_coeff * terms["loss_center"]
        else:  # chosen = safer response: the rejected (less safe) one must cost more
            terms["loss_rank"] = cost_ranking_loss(rejected, chosen).mean() if num_pairs else zero
            known = is_unsafe >= 0  # (N,) responses whose safety label is known
            terms["loss_sign"] = cost_sign_loss(scores[known], is_unsafe[known]).mean() if known.any() else zero
            terms["loss"] = terms["loss_rank"] + self.sign_loss_weight * terms["loss_sign"]
        return terms

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        num_pairs = int(inputs["num_pairs"])
        scores = sequence_scores(model, inputs["input_ids"], inputs["attention_mask"])  # (N,) float32
        is_unsafe = inputs["is_unsafe"].to(scores.device)
        terms = self.loss_terms(scores, is_unsafe, num_pairs)
        with torch.no_grad():
            det = scores.detach()
            if model.training:
                m = reward_metrics(det[:num_pairs].tolist(), det[num_pairs: 2 * num_pairs].tolist(), self.dimension,
                                   *self._known(det, is_unsafe))
                for k, v in m.items():
                    if k != "auroc" and v == v:  # per-batch AUROC is noisy; NaN (empty) skipped
                        self._train_metrics[k].append(v)
                for k, v in terms.items():
                    if k != "loss":
                        self._train_metrics[k].append(v.item())
            else:
                self._eval_store["chosen"] += det[:num_pairs].tolist()
                self._eval_store["rejected"] += det[num_pairs: 2 * num_pairs].tolist()
                costs, labels = self._known(det, is_unsafe)
                self._eval_store["costs"] += costs
                self._eval_store["is_unsafe"] += labels
        return (terms["loss"], {"scores": det}) if return_outputs else terms["loss"]

    @staticmethod
    def _known(scores: torch.Tensor, is_unsafe: torch.Tensor) -> tuple[list[float], list[int]]:
        known = is_unsafe >= 0
        return scores[known].tolist(), is_unsafe[known].tolist()

    # ------------------------------------------------------------------ evaluation
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix: str = "eval"):
        self._eval_store.clear()
        output = super().evaluation_loop(dataloader, description, prediction_loss_only=True,
                                         ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        store = {k: self._gather(v) for k, v in self._eval_store.items()}
        figures = reward_metrics(store.get("chosen", []), store.get("rejected", []), self.dimension,
                                 store.get("costs", []), store.get("is_unsafe", []))
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in figures.items()})
        self._eval_store.clear()
        return output

    def _gather(self, values: list) -> list:
        return values if self.accelerator.num_processes == 1 else gather_object(values)

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._train_metrics and "loss" in logs:  # a training log: add the step figures since the last one
            logs.update({k: sum(v) / len(v) for k, v in self._train_metrics.items()})
            self._train_metrics.clear()
        super().log(logs, start_time)
