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
from . import objective
from .constraints import RunConstraint, harmful_pool, on_policy_terms
from .lagrange import STATE_FILE, all_reduce_sum
from .objective import pick as _pick
from .packing import sequence_logps_fn

log = logging.getLogger(__name__)
METRIC_KEYS = ("loss_total", "loss_helpful", "loss_safety", "loss_kl", "dual_loss", "reward_helpful_mean",
               "reward_safety_mean", "delta_helpful_mean", "delta_safety_mean", "beta_helpful_mean",
               "beta_safety_mean", "kl_divergence", "kl_k1", "perplexity", "logratio_margin_helpful",
               "logratio_margin_safety", "accuracy_helpful", "accuracy_safety")


class _StepHooks(TrainerCallback):
    """Forwards the two optimizer-step events the trainer needs (callbacks see no trainer otherwise)."""

    def __init__(self, trainer: "SafeMMDPOTrainer"):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._before_optimizer_step()

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._after_optimizer_step()


class SafeMMDPOTrainer(AtomicCheckpointMixin, Trainer):
    """Trainer for every `dpo.algorithm` (args: a SafeDPOConfig; the losses in `objective`).

    Online mode: pass `ref_model` (None with LoRA: the adapter is disabled instead) and `helpful_scorer` /
    `cost_scorer` as (model, tokenizer) pairs; batches must then carry the texts. `cost_scorer` is also what
    the on-policy J_C estimator scores samples with. `prompts`: training prompts for on-policy sampling, each
    {prompt, harmful, record} (`record`: one of its records, for the constraint groups). `constraint`: the
    run's multipliers (`constraints.RunConstraint`; built from the args and no records when not given).
    `run_config`: the resolved config sections written into each checkpoint as config.yaml.
    """

    checkpoint_required_files = (STATE_FILE,)  # a checkpoint without the λ state cannot resume exactly

    def __init__(self, *args, ref_model=None, helpful_scorer=None, cost_scorer=None, prompts=None,
                 constraint: RunConstraint | None = None, run_config: dict | None = None, **kwargs):
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
        self.constraint = constraint or RunConstraint(self.args, [])
        self.checkpoint_required_files = self.constraint.required_files
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._nan_in_step = False
        self.add_callback(_StepHooks(self))

    @property
    def lagrange(self):
        """The single-λ state (λ, J_C trajectory, step and NaN counters)."""
        return self.constraint.single

    # ------------------------------------------------------------------ the loss
    def _reference_and_scores(self, model, inputs):
        """(ref_logp_0, ref_logp_1, helpful_0, helpful_1, cost_0, cost_1), each (B,) on the policy's device."""
        if "ref_logp_0" in inputs:
            return tuple(inputs[k] for k in ("ref_logp_0", "ref_logp_1", "helpful_0", "helpful_1", "cost_0", "cost_1"))
        b = inputs["better"].shape[0]
        sequence_logps = sequence_logps_fn(self.args.padding_free)  # padded or packed forward
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
        pol, ntok = sequence_logps_fn(a.padding_free)(model, inputs["input_ids"], inputs["attention_mask"],
                                                      inputs["response_mask"])
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
        # KL (k3, per token) on the chosen responses of the pairs the algorithm trains on; k1 (the plain per-token
        # log ratio, unbiased but negative whenever π_θ has moved below π_ref on these responses) is logged beside it
        kl = losses.kl_penalty(pw_h, rw_h, nw_h)
        kl_s = losses.kl_penalty(pw_s, rw_s, nw_s)
        kl_k1 = (pw_h - rw_h) / nw_h.clamp(min=1).to(pw_h.dtype)
        if a.is_safe:
            kl_k1 = 0.5 * (kl_k1 + (pw_s - rw_s) / nw_s.clamp(min=1).to(pw_s.dtype))
        pairs = objective.Pairs.from_batch(inputs, pol, ntok, (ref0, ref1, h0, h1, c0, c1))
        parts, counted = self.algorithm_step(pairs, logit_h, logit_s, beta_h, beta_s, kl, kl_s, training)
        loss = parts["loss"]
        with torch.no_grad():
            chosen_lp, chosen_n = torch.cat([pw_h, pw_s]), torch.cat([nw_h, nw_s])
            metrics = {
                "loss_total": loss, "loss_helpful": parts["loss_helpful"], "loss_safety": parts["loss_safety"],
                "loss_kl": parts["loss_kl"], "dual_loss": parts["loss_helpful"] + parts["loss_safety"],
                "reward_helpful_mean": torch.cat([h0, h1]).mean(), "reward_safety_mean": -torch.cat([c0, c1]).mean(),
                "delta_helpful_mean": delta_h.mean(), "delta_safety_mean": delta_s.mean(),
                "beta_helpful_mean": beta_h.mean(), "beta_safety_mean": beta_s.mean(),
                "kl_divergence": parts["loss_kl"], "kl_k1": kl_k1.mean(),  # the KL the loss uses (k3, >= 0), and k1
                "perplexity": torch.exp(-chosen_lp.sum() / chosen_n.sum().clamp(min=1)),
                "logratio_margin_helpful": logit_h.mean(), "logratio_margin_safety": logit_s.mean(),
                "accuracy_helpful": (logit_h > 0).float().mean(), "accuracy_safety": (logit_s > 0).float().mean(),
            }
        return loss, {**{k: float(v.detach()) for k, v in metrics.items()}, **counted}

    def algorithm_step(self, pairs, logit_h, logit_s, beta_h, beta_s, kl_h, kl_s, training: bool):
        """The algorithm's loss parts (`objective.algorithm_loss`) and the subset metrics; in training with the
        batch estimator, the batch's J_C terms go to the multipliers."""
        a = self.args
        lam = self.constraint.multipliers(pairs.member, pairs.better.shape[0], logit_h.device)
        parts = objective.algorithm_loss(a, pairs, logit_h, logit_s, beta_h, beta_s, kl_h, kl_s, lam)
        values, weights = objective.constraint_terms(a, pairs)
        if training and a.is_safe and a.jc_estimator == "batch":
            self.constraint.accumulate(values, weights, pairs.member)
        return parts, objective.counted_metrics(a, pairs, logit_h, logit_s, beta_h, beta_s, values, weights)

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
            # a (sum, count) value is over a subset of the pairs (objective.COUNTED_KEYS)
            self._metrics[kind][k].append(v if isinstance(v, tuple) else (v * n, n))

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, metrics = self.pair_losses(model, inputs, training=False)
        self._store(metrics, "eval", inputs["better"].shape[0])
        return loss.detach(), None, None

    def log(self, logs: dict, start_time=None) -> None:
        kind = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        stored = self._metrics[kind]
        keys = METRIC_KEYS + objective.COUNTED_KEYS  # fixed: every rank joins the same all-reduce
        sums = all_reduce_sum([sum(v for v, _ in stored.get(k, [])) for k in keys]
                              + [float(sum(n for _, n in stored.get(k, []))) for k in keys], self.args.device)
        prefix = "eval_" if kind == "eval" else ""
        for i, k in enumerate(keys):  # mean over pairs of all micro-batches and processes
            if sums[len(keys) + i] > 0:
                logs[prefix + k] = sums[i] / sums[len(keys) + i]  # in place: evaluate() returns this dict
        self.constraint_logs(logs, prefix)
        if kind == "train":
            logs["nan_steps_skipped"] = self.lagrange.nan_steps_total
            if self.args.is_safe:  # J_C of the last λ update, and the threshold it is compared with
                if self.lagrange.last_jc is not None:
                    logs["jc"] = self.lagrange.last_jc
                logs["cost_threshold"] = self.args.cost_threshold
        stored.clear()
        super().log(logs, start_time)

    def constraint_logs(self, logs: dict, prefix: str) -> None:
        """λ (and per group λ, J_C) and, in evaluation, the constrained-selection metric."""
        if self.args.is_safe:  # a helpful-only algorithm has no multiplier to show
            logs.update({prefix + k: v for k, v in self.constraint.logs().items()})
        if prefix:
            logs["eval_constrained_helpfulness"] = objective.constrained_helpfulness(
                logs.get("eval_helpful_choice"), logs.get("eval_jc"), self.args.cost_threshold)

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
        if a.is_safe and a.jc_estimator == "on_policy" and self.state.global_step % a.on_policy_every == 0:
            self.constraint.accumulate(*self.on_policy_terms())
        self.constraint.step(self.args.device)

    def on_policy_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(values, weights, membership) of J_C from answers sampled now (`constraints.on_policy_terms`)."""
        chosen, costs = self.sample_costs()
        member = None
        if self.constraint.grouped is not None:
            member = torch.tensor([self.constraint.member_of(p["record"]) for p in chosen], dtype=torch.bool)
        values, weights = on_policy_terms(self.args.constraint, costs, [p["harmful"] for p in chosen])
        return values, weights, member

    def on_policy_cost(self) -> float:
        """J_C (Σ w·v / Σ w) of one on-policy sample."""
        values, weights, _ = self.on_policy_terms()
        return float((values * weights).sum() / weights.sum().clamp(min=1e-12))

    @torch.no_grad()
    def sample_costs(self) -> tuple[list[dict], torch.Tensor]:
        """The sampled prompts and the cost-model scores of the policy's answers to them, sampled now from
        `on_policy_num_prompts` training prompts (harmful ones when the constraint counts only those)."""
        if self.cost_scorer is None or not self.prompts:
            raise SafeAlignError("jc_estimator=on_policy needs the cost model and training prompts")
        a = self.args
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        g = torch.Generator().manual_seed(a.seed * 1000003 + self.state.global_step * 31 + rank)
        pool = harmful_pool(self.prompts, a.constraint)
        idx = torch.randperm(len(pool), generator=g)[: a.on_policy_num_prompts].tolist()
        chosen = [pool[i] for i in idx]
        prompts = [p["prompt"] for p in chosen]
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
            out = policy.generate(input_ids=ids, attention_mask=attn, do_sample=True, top_p=1.0,
                                  temperature=a.on_policy_temperature,
                                  max_new_tokens=a.on_policy_max_new_tokens, pad_token_id=tok.pad_token_id)
        policy.train(was_training)
        answers = tok.batch_decode(out[:, width:], skip_special_tokens=True)
        costs = score_pairs(self.cost_scorer[0], self.cost_scorer[1], prompts, [x.strip() or "." for x in answers],
                            max_length=a.max_length, show_progress=False, desc="on-policy cost")
        return chosen, torch.tensor(costs, dtype=torch.float32)

    # ------------------------------------------------------------------ checkpoints (extra state)
    def gather_checkpoint_state(self) -> None:
        # every rank's λ accumulators go into the file (rank 0 holds their sum after a resume)
        self.constraint.gather(self.args.device)

    def extra_checkpoint_state(self, folder: str) -> None:
        self.constraint.save(folder)
        if self.run_config is not None:
            write_text(os.path.join(folder, "config.yaml"), yaml.safe_dump(self.run_config, sort_keys=False))

    def load_extra_checkpoint_state(self, folder: str) -> None:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.constraint.load(folder, rank)  # the saved accumulators are the sum over ranks: counted once
        log.info("λ state restored from %s (λ = %.6g, step %d)", folder, self.lagrange.lam, self.lagrange.steps)
