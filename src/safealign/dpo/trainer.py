"""SafeMMDPOTrainer: `transformers.Trainer` with the Safe-MM-DPO loss, λ dual ascent and NaN guard; its
checkpoints are the shared atomic ones (`AtomicCheckpointMixin`) with the λ state and the run's config added.

One policy forward over the stacked responses [y_0; y_1] gives log π_θ(y_i|x) for both; the helpful pair is
read through `better`, the safety pair through `safer`. Reference log-probs and judge scores come from the
batch (precompute mode) or from frozen models held by the trainer (online mode).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict

import torch
import yaml
from transformers import Trainer, TrainerCallback

from .. import losses
from ..chat import encode_prompt
from ..errors import SafeAlignError
from ..fileio import write_text
from ..rm.scoring import score_pairs
from ..training import AtomicCheckpointMixin
from .data import sequence_logps
from .lagrange import STATE_FILE, LagrangeState, all_reduce_sum

log = logging.getLogger(__name__)
METRIC_KEYS = ("loss_total", "loss_helpful", "loss_safety", "loss_kl", "dual_loss", "reward_helpful_mean",
               "reward_safety_mean", "delta_helpful_mean", "delta_safety_mean", "beta_helpful_mean",
               "beta_safety_mean", "kl_divergence", "perplexity", "logratio_margin_helpful",
               "logratio_margin_safety", "accuracy_helpful", "accuracy_safety")


class _StepHooks(TrainerCallback):
    """Forwards the two optimizer-step events the trainer needs (callbacks see no trainer otherwise)."""

    def __init__(self, trainer: "SafeMMDPOTrainer"):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._before_optimizer_step()

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._after_optimizer_step()


def _pick(choice: torch.Tensor, v0: torch.Tensor, v1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(winner, loser) values of a pair whose winning index is `choice` (B,) in {0, 1}."""
    first = choice == 0
    return torch.where(first, v0, v1), torch.where(first, v1, v0)


class SafeMMDPOTrainer(AtomicCheckpointMixin, Trainer):
    """Trainer for algorithm dpo | mm_dpo | safe_dpo | safe_mm_dpo (args: a SafeDPOConfig).

    Online mode: pass `ref_model` (None with LoRA: the adapter is disabled instead) and `helpful_scorer` /
    `cost_scorer` as (model, tokenizer) pairs; batches must then carry the texts. `cost_scorer` is also what
    the on-policy J_C estimator scores samples with. `prompts`: training prompts for on-policy sampling.
    `run_config`: the resolved config sections written into each checkpoint as config.yaml.
    """

    checkpoint_required_files = (STATE_FILE,)  # a checkpoint without the λ state cannot resume exactly

    def __init__(self, *args, ref_model=None, helpful_scorer=None, cost_scorer=None, prompts=None,
                 run_config: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_config = run_config
        self.model_accepts_loss_kwargs = False  # our loss is a per-pair mean: let Trainer divide by GA
        self.ref_model = ref_model
        self.helpful_scorer = helpful_scorer
        self.cost_scorer = cost_scorer
        self.prompts = prompts or []
        for frozen in (ref_model, (helpful_scorer or (None,))[0], (cost_scorer or (None,))[0]):
            if frozen is not None:
                frozen.eval().requires_grad_(False).to(self.args.device)
        self.lagrange = LagrangeState(lam=float(self.args.lambda_init))
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._nan_in_step = False
        self._saved_lagrange: LagrangeState | None = None
        self.add_callback(_StepHooks(self))

    # ------------------------------------------------------------------ the loss
    def _reference_and_scores(self, model, inputs):
        """(ref_logp_0, ref_logp_1, helpful_0, helpful_1, cost_0, cost_1), each (B,) on the policy's device."""
        if "ref_logp_0" in inputs:
            return tuple(inputs[k] for k in ("ref_logp_0", "ref_logp_1", "helpful_0", "helpful_1", "cost_0", "cost_1"))
        b = inputs["better"].shape[0]
        with torch.no_grad():
            if self.ref_model is not None:
                ref, _ = sequence_logps(self.ref_model, inputs["input_ids"], inputs["attention_mask"],
                                        inputs["response_mask"])
            else:  # LoRA: the reference is the base with the adapter switched off
                policy = self.accelerator.unwrap_model(model)
                if not hasattr(policy, "disable_adapter"):
                    raise SafeAlignError("online mode needs a reference model (or a LoRA policy)")
                with policy.disable_adapter():
                    ref, _ = sequence_logps(policy, inputs["input_ids"], inputs["attention_mask"],
                                            inputs["response_mask"])
        scores = []
        for scorer in (self.helpful_scorer, self.cost_scorer):
            if scorer is None:
                scores.append(torch.zeros(2 * b, device=ref.device))
                continue
            s = score_pairs(scorer[0], scorer[1], inputs["prompt"] * 2, inputs["response_0"] + inputs["response_1"],
                            max_length=self.args.max_length, show_progress=False, desc="online scores")
            scores.append(torch.tensor(s, dtype=torch.float32, device=ref.device))
        ref = ref.float()
        return ref[:b], ref[b:], scores[0][:b], scores[0][b:], scores[1][:b], scores[1][b:]

    def pair_losses(self, model, inputs, training: bool):
        """The loss (scalar, with grad) and a dict of float metrics for one batch."""
        a = self.args
        pol, ntok = sequence_logps(model, inputs["input_ids"], inputs["attention_mask"], inputs["response_mask"])
        b = inputs["better"].shape[0]
        lp0, lp1, n0, n1 = pol[:b], pol[b:], ntok[:b], ntok[b:]
        ref0, ref1, h0, h1, c0, c1 = (t.to(pol.device).float() for t in self._reference_and_scores(model, inputs))
        better, safer = inputs["better"].to(pol.device), inputs["safer"].to(pol.device)
        # helpful pair (by better_response_id) and safety pair (by safer_response_id): same two responses
        pw_h, pl_h = _pick(better, lp0, lp1)
        rw_h, rl_h = _pick(better, ref0, ref1)
        pw_s, pl_s = _pick(safer, lp0, lp1)
        rw_s, rl_s = _pick(safer, ref0, ref1)
        nw_h, _ = _pick(better, n0, n1)
        nw_s, _ = _pick(safer, n0, n1)
        sw_h, sl_h = _pick(better, h0, h1)
        cw_s, cl_s = _pick(safer, c0, c1)
        delta_h = sw_h - sl_h
        delta_s = (-cw_s) - (-cl_s)  # R_S = −cost
        if a.dynamic_beta:
            beta_h = losses.dynamic_beta(delta_h, a.beta_ori, a.w, a.k, a.beta_min)
            beta_s = losses.dynamic_beta(delta_s, a.beta_ori, a.w, a.k, a.beta_min)
        else:
            beta_h = torch.full_like(delta_h, a.beta_ori)
            beta_s = torch.full_like(delta_s, a.beta_ori)
        logit_h = losses.dpo_logits(pw_h, pl_h, rw_h, rl_h)
        logit_s = losses.dpo_logits(pw_s, pl_s, rw_s, rl_s)
        # KL (k3, per token) on the chosen responses of the pairs the algorithm trains on
        kl = losses.kl_penalty(pw_h, rw_h, nw_h)
        if a.is_safe:
            kl = 0.5 * (kl + losses.kl_penalty(pw_s, rw_s, nw_s))
        lam = self.lagrange.lam if a.is_safe else 0.0
        parts = losses.safe_mm_dpo_loss(logit_h, logit_s, beta_h, beta_s, lam, kl, a.kl_coeff)
        loss = parts["loss"]
        if training and a.is_safe and a.jc_estimator == "batch":
            jc = losses.expected_cost(lp0 - ref0, lp1 - ref1, c0, c1, a.beta_ori)
            self.lagrange.accumulate(float(jc))
        with torch.no_grad():
            chosen_lp, chosen_n = torch.cat([pw_h, pw_s]), torch.cat([nw_h, nw_s])
            metrics = {
                "loss_total": loss, "loss_helpful": parts["loss_helpful"], "loss_safety": parts["loss_safety"],
                "loss_kl": parts["loss_kl"], "dual_loss": parts["loss_helpful"] + parts["loss_safety"],
                "reward_helpful_mean": torch.cat([h0, h1]).mean(), "reward_safety_mean": -torch.cat([c0, c1]).mean(),
                "delta_helpful_mean": delta_h.mean(), "delta_safety_mean": delta_s.mean(),
                "beta_helpful_mean": beta_h.mean(), "beta_safety_mean": beta_s.mean(),
                # sequence-level KL estimate (k1) on the chosen responses: mean log π_θ/π_ref
                "kl_divergence": torch.cat([pw_h - rw_h, pw_s - rw_s]).mean(),
                "perplexity": torch.exp(-chosen_lp.sum() / chosen_n.sum().clamp(min=1)),
                "logratio_margin_helpful": logit_h.mean(), "logratio_margin_safety": logit_s.mean(),
                "accuracy_helpful": (logit_h > 0).float().mean(), "accuracy_safety": (logit_s > 0).float().mean(),
            }
        return loss, {k: float(v.detach()) for k, v in metrics.items()}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, metrics = self.pair_losses(model, inputs, training=model.training)
        if not torch.isfinite(loss):
            # Skip: a zero loss still attached to every trainable parameter (DDP needs each to get a grad);
            # the optimizer step is then dropped in _before_optimizer_step.
            self._nan_in_step = True
            loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            metrics = {}
        self._store(metrics, "train" if model.training else "eval", inputs["better"].shape[0])
        return (loss, {}) if return_outputs else loss

    def _store(self, metrics: dict, kind: str, n: int) -> None:
        for k, v in metrics.items():  # weighted by pairs: a short last eval batch counts less
            self._metrics[kind][k].append((v * n, n))

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, metrics = self.pair_losses(model, inputs, training=False)
        self._store(metrics, "eval", inputs["better"].shape[0])
        return loss.detach(), None, None

    def log(self, logs: dict, start_time=None) -> None:
        kind = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        stored = self._metrics[kind]
        keys = METRIC_KEYS  # a fixed list: every rank joins the same all-reduce even after a skipped batch
        sums = all_reduce_sum([sum(v for v, _ in stored.get(k, [])) for k in keys]
                              + [float(sum(n for _, n in stored.get(k, []))) for k in keys], self.args.device)
        prefix = "eval_" if kind == "eval" else ""
        for i, k in enumerate(keys):  # mean over pairs of all micro-batches and processes
            if sums[len(keys) + i] > 0:
                logs[prefix + k] = sums[i] / sums[len(keys) + i]  # in place: evaluate() returns this dict
        logs["lambda" if kind == "train" else "eval_lambda"] = self.lagrange.lam
        if kind == "train":
            logs["nan_steps_skipped"] = self.lagrange.nan_steps_total
        stored.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ around each optimizer step
    def _before_optimizer_step(self) -> None:
        flag = all_reduce_sum([1.0 if self._nan_in_step else 0.0], self.args.device)[0]
        self._nan_in_step = flag > 0
        if self._nan_in_step:  # grads = None: AdamW skips these params (no step, no momentum, no decay)
            for p in self.model.parameters():
                p.grad = None

    def _after_optimizer_step(self) -> None:
        a, st = self.args, self.lagrange
        if self._nan_in_step:
            st.nan_steps_total += 1
            st.nan_steps_in_a_row += 1
            log.warning("step %d: non-finite loss, update skipped (%d in a row)", self.state.global_step,
                        st.nan_steps_in_a_row)
            self._nan_in_step = False
            if st.nan_steps_in_a_row > a.max_nan_steps:
                raise SafeAlignError(
                    f"training stopped: {st.nan_steps_in_a_row} steps in a row had a non-finite loss "
                    f"(dpo.max_nan_steps={a.max_nan_steps}); lower the learning rate or check the data; "
                    f"the last good checkpoint in {a.output_dir} is intact")
        else:
            st.nan_steps_in_a_row = 0
        if not a.is_safe:
            st.steps += 1
            return
        if a.jc_estimator == "on_policy" and self.state.global_step % a.on_policy_every == 0:
            st.accumulate(self.on_policy_cost())
        st.step(a.lambda_lr, a.cost_threshold, a.lambda_max, a.lambda_update_steps, self.args.device)

    @torch.no_grad()
    def on_policy_cost(self) -> float:
        """Mean cost-model score of answers sampled now from the policy to a few training prompts."""
        if self.cost_scorer is None or not self.prompts:
            raise SafeAlignError("jc_estimator=on_policy needs the cost model and training prompts")
        a = self.args
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        g = torch.Generator().manual_seed(a.seed * 1000003 + self.state.global_step * 31 + rank)
        idx = torch.randperm(len(self.prompts), generator=g)[: a.on_policy_num_prompts].tolist()
        prompts = [self.prompts[i] for i in idx]
        policy = self.accelerator.unwrap_model(self.model)
        tok = self.processing_class
        enc = [encode_prompt(tok, p, a.effective_max_prompt_length()) for p in prompts]
        width = max(map(len, enc))
        ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in enc], device=a.device)
        attn = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc], device=a.device)
        was_training = policy.training
        policy.eval()
        # fork the RNG: sampling must not shift the training stream (exact resume, DP equivalence)
        with torch.random.fork_rng(devices=[a.device] if a.device.type == "cuda" else []):
            torch.manual_seed(int(g.initial_seed() % 2**31))
            out = policy.generate(input_ids=ids, attention_mask=attn, do_sample=True, top_p=1.0, temperature=1.0,
                                  max_new_tokens=a.on_policy_max_new_tokens, pad_token_id=tok.pad_token_id)
        policy.train(was_training)
        answers = tok.batch_decode(out[:, width:], skip_special_tokens=True)
        costs = score_pairs(self.cost_scorer[0], self.cost_scorer[1], prompts, [x.strip() or "." for x in answers],
                            max_length=a.max_length, show_progress=False, desc="on-policy cost")
        return sum(costs) / len(costs)

    # ------------------------------------------------------------------ checkpoints (extra state)
    def gather_checkpoint_state(self) -> None:
        # every rank's λ accumulators go into the file (rank 0 holds their sum after a resume)
        total, count = all_reduce_sum([self.lagrange.jc_sum, float(self.lagrange.jc_count)], self.args.device)
        self._saved_lagrange = LagrangeState.from_dict(self.lagrange.to_dict())
        self._saved_lagrange.jc_sum, self._saved_lagrange.jc_count = total, int(count)

    def extra_checkpoint_state(self, folder: str) -> None:
        self._saved_lagrange.save(folder)
        if self.run_config is not None:
            write_text(os.path.join(folder, "config.yaml"), yaml.safe_dump(self.run_config, sort_keys=False))

    def load_extra_checkpoint_state(self, folder: str) -> None:
        self.lagrange = LagrangeState.load(folder)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if rank != 0:  # the saved accumulators are the sum over ranks: count them once
            self.lagrange.jc_sum, self.lagrange.jc_count = 0.0, 0
        log.info("λ state restored from %s (λ = %.6g, step %d)", folder, self.lagrange.lam, self.lagrange.steps)
