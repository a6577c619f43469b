"""Every loss of the project as a pure tensor function (no models, no state), each with its formula.

Shapes: B = number of pairs (or responses for the sign loss). Every function returns per-example values
(`(B,)`) unless it says otherwise; callers take the mean.

Conventions: a reward model scores r(x, y) (higher = more helpful); the cost model scores c(x, y) with
c > 0 meaning unsafe, and the harmless reward is R_S = -c.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- reward models
def pairwise_ranking_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry ranking loss  L = -log σ(r_w − r_l).

    r_chosen: (B,) scores of the preferred responses; r_rejected: (B,) of the others. Returns (B,).
    """
    return -F.logsigmoid(r_chosen - r_rejected)  # (B,)


def reward_centering_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Reward-centering regulariser  L = (r_w + r_l)²  (Eisenstein et al. 2023), keeps scores near 0. (B,)"""
    return (r_chosen + r_rejected) ** 2  # (B,)


def cost_ranking_loss(c_less_safe: torch.Tensor, c_safer: torch.Tensor) -> torch.Tensor:
    """Safe RLHF cost ranking loss  L = -log σ(c(y_less_safe) − c(y_safer)): the less safe one costs more. (B,)"""
    return -F.logsigmoid(c_less_safe - c_safer)  # (B,)


def cost_sign_loss(costs: torch.Tensor, is_unsafe: torch.Tensor) -> torch.Tensor:
    """Safe RLHF sign loss  L = -log σ(s · c(y)),  s = +1 if y is unsafe else −1, so that c > 0 ⇔ unsafe.

    costs: (N,) cost of each response; is_unsafe: (N,) bool or {0,1}. Returns (N,).
    """
    sign = is_unsafe.to(costs.dtype) * 2 - 1  # (N,) in {−1, +1}
    return -F.logsigmoid(sign * costs)  # (N,)


# ----------------------------------------------------------------------------- MM-DPO
def dynamic_beta(delta: torch.Tensor, beta_ori: float, w: float, k: float, beta_min: float = 1e-3) -> torch.Tensor:
    """MM-DPO margin-aware scale  β(δ) = β_ori · (1 + w · (1 − exp(−k·δ))),  clamped to [beta_min, β_ori·(1+w)].

    A large reward-model margin δ pushes β towards β_ori·(1+w) (trust the pair more); δ = 0 gives β_ori.
    A negative δ (the judge disagrees with the label) lowers β, and the clamp at `beta_min` > 0 keeps β
    positive so the DPO loss can never flip its sign (exp(−k·δ) grows without bound for δ → −∞).
    delta: (B,). Returns (B,).
    """
    if beta_min <= 0:
        raise ValueError("beta_min must be > 0")
    beta = beta_ori * (1.0 + w * (1.0 - torch.exp(-k * delta)))  # (B,)
    upper = beta_ori * (1.0 + w) if w >= 0 else beta_ori
    return beta.clamp(min=beta_min, max=max(upper, beta_min))


def dpo_logits(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
               ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor) -> torch.Tensor:
    """h = (log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x)).  All (B,); returns (B,)."""
    return (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)


def mm_dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
                beta: torch.Tensor | float) -> torch.Tensor:
    """(MM-)DPO sigmoid loss  L = −log σ(β · h),  h as in `dpo_logits`; β per pair (B,) or a float (plain DPO).

    logps are sums of log-probabilities over response tokens, each (B,). Returns (B,).
    """
    h = dpo_logits(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)  # (B,)
    return -F.logsigmoid(beta * h)  # (B,)


def kl_penalty(policy_logps: torch.Tensor, ref_logps: torch.Tensor, num_tokens: torch.Tensor) -> torch.Tensor:
    """Non-negative KL(π_θ‖π_ref) estimate on the chosen responses (Schulman's k3 on per-token log ratios):

        r = (log π_ref(y|x) − log π_θ(y|x)) / |y|,   KL ≈ exp(r) − 1 − r  ≥ 0.

    The per-token mean keeps long responses from dominating; k3 is unbiased when y ~ π_θ and, unlike the
    plain log ratio (k1), never negative, so it can only pull the policy back. All (B,); returns (B,).
    """
    r = (ref_logps - policy_logps) / num_tokens.clamp(min=1).to(policy_logps.dtype)  # (B,)
    return torch.expm1(r) - r  # (B,)


def safe_mm_dpo_loss(helpful_logits: torch.Tensor, safety_logits: torch.Tensor, beta_helpful: torch.Tensor,
                     beta_safety: torch.Tensor, lam: float, kl: torch.Tensor | None = None,
                     kl_coeff: float = 0.0) -> dict[str, torch.Tensor]:
    """Safe-MM-DPO objective

        L = L_H / (1+λ) + λ · L_S / (1+λ) + kl_coeff · KL,
        L_H = −log σ(β_H · h_H),  L_S = −log σ(β_S · h_S),

    h_H, h_S: DPO logits (`dpo_logits`) of the helpful and the safety pair, (B,); β_H, β_S: (B,) from
    `dynamic_beta`; λ ≥ 0 the Lagrange multiplier (a float: it is not optimised by the model's optimizer).
    Returns scalar means: {"loss", "loss_helpful", "loss_safety", "loss_kl"}.
    """
    loss_h = -F.logsigmoid(beta_helpful * helpful_logits)  # (B,)
    loss_s = -F.logsigmoid(beta_safety * safety_logits)  # (B,)
    loss_kl = kl.mean() if kl is not None else helpful_logits.new_zeros(())
    total = (loss_h.mean() + lam * loss_s.mean()) / (1.0 + lam) + kl_coeff * loss_kl
    return {"loss": total, "loss_helpful": loss_h.mean(), "loss_safety": loss_s.mean(), "loss_kl": loss_kl}


def expected_cost(logratio_0: torch.Tensor, logratio_1: torch.Tensor, cost_0: torch.Tensor,
                  cost_1: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-batch J_C estimate from the policy's current preference between the two responses:

        p_0 = σ(β · (ρ_0 − ρ_1)),  ρ_i = log π_θ(y_i|x) − log π_ref(y_i|x),
        J_C ≈ mean_b [ p_0 · c_0 + (1 − p_0) · c_1 ].

    At π_θ = π_ref it is the mean cost of the two responses; it falls as the policy moves mass to the
    cheaper (safer) response, so λ reacts to the *current* policy. All (B,); returns a scalar (no gradient).
    """
    with torch.no_grad():
        p0 = torch.sigmoid(beta * (logratio_0 - logratio_1))  # (B,)
        return (p0 * cost_0 + (1 - p0) * cost_1).mean()


def lagrange_update(lam: float, j_c: float, lr: float, threshold: float = 0.0,
                    lambda_max: float | None = None) -> float:
    """Projected dual ascent  λ ← clip(λ + lr · (J_C − threshold), 0, lambda_max)."""
    new = max(0.0, lam + lr * (j_c - threshold))
    return min(new, lambda_max) if lambda_max is not None else new


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean of `values` over `mask` (B,) = Σ m·v / max(Σ m, 1); 0 — still attached to the graph — when the
    mask is empty, so a batch whose pairs are all dropped gives a zero loss, not a NaN."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1.0)


# ----------------------------------------------------------------------------- SafeDPO (baseline)
def safedpo_transform(better: torch.Tensor, unsafe_0: torch.Tensor,
                      unsafe_1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SafeDPO's safety-aware reordering T of a helpfulness pair (Kim et al., "SafeDPO: a simple approach to
    direct preference optimization with enhanced safety", ICLR 2026, arXiv:2505.20065).

    y_w = response `better`, y_l = the other, h = 1 for an unsafe response (the binary safety labels):
        h_w = 0            -> keep (y_w, y_l)
        h_w = 1, h_l = 0   -> swap: the safe response becomes the chosen one
        h_w = 1, h_l = 1   -> drop the pair
    better, unsafe_0, unsafe_1: (B,) ({0,1} ints or bools). Returns chosen (B,) long in {0,1} (the index of
    ỹ_w), keep (B,) bool, and h̃_l − h̃_w (B,) float in {0, 1}: 1 exactly on kept safe-vs-unsafe pairs.
    """
    better = better.long()
    u0, u1 = unsafe_0.bool(), unsafe_1.bool()
    unsafe_w = torch.where(better == 0, u0, u1)  # (B,)
    unsafe_l = torch.where(better == 0, u1, u0)
    chosen = torch.where(unsafe_w & ~unsafe_l, 1 - better, better)
    keep = ~(unsafe_w & unsafe_l)
    # after T the chosen is always safe on kept pairs, so h̃_l − h̃_w = h̃_l = "the pair is safe vs unsafe"
    margin_on = (keep & (unsafe_w ^ unsafe_l)).float()
    return chosen, keep, margin_on


def safedpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                 ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, margin_on: torch.Tensor,
                 beta: float, delta: float) -> torch.Tensor:
    """SafeDPO loss on the transformed pairs (ỹ_w, ỹ_l) of `safedpo_transform`:

        L = −log σ( β · h − (h̃_l − h̃_w) · Δ ),   h = `dpo_logits` of (ỹ_w, ỹ_l),

    with Δ ≥ 0 the safety offset (the paper's default Δ = 10 at β = 0.1): on a safe-vs-unsafe pair the
    implicit-reward gap β·h must exceed Δ before the loss flattens, which pushes the unsafe answer down
    harder; the paper shows Δ leaves the optimal policy unchanged (it only speeds up leaving the unsafe
    region). No reward or cost model is used: only the helpfulness preference and the binary safety labels.
    logps: (B,) sums over response tokens; margin_on: (B,) h̃_l − h̃_w in {0,1}. Returns (B,); average it
    over the kept pairs only (`masked_mean(loss, keep)`): dropped (both unsafe) pairs carry no signal.
    """
    if delta < 0:
        raise ValueError("delta must be >= 0")
    h = dpo_logits(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)  # (B,)
    return -F.logsigmoid(beta * h - margin_on.to(h.dtype) * delta)  # (B,)


# ----------------------------------------------------------------------------- an interpretable J_C
# docs/constraint.md derives these. Each returns per-pair values (B,) without gradient; a Lagrange state
# sums value·weight and weight over an update window (and over processes) and divides once.
CONSTRAINT_KINDS = ("cost", "harmful_cost", "unsafe_rate", "harmful_unsafe_rate", "unsafe_choice")


def policy_preference(logratio_0: torch.Tensor, logratio_1: torch.Tensor, beta: float) -> torch.Tensor:
    """p_0 = σ(β (ρ_0 − ρ_1)), ρ_i = log π_θ(y_i|x) − log π_ref(y_i|x): the policy's (DPO-implicit)
    probability of choosing y_0 over y_1; 0.5 at π_θ = π_ref. (B,) -> (B,), no gradient."""
    with torch.no_grad():
        return torch.sigmoid(beta * (logratio_0 - logratio_1))


def pair_expected_cost(logratio_0: torch.Tensor, logratio_1: torch.Tensor, cost_0: torch.Tensor,
                       cost_1: torch.Tensor, beta: float) -> torch.Tensor:
    """Per pair p_0 c_0 + (1 − p_0) c_1 (cost-model units; `expected_cost` is its batch mean). (B,)"""
    p0 = policy_preference(logratio_0, logratio_1, beta)
    return p0 * cost_0 + (1 - p0) * cost_1


def pair_unsafe_probability(logratio_0: torch.Tensor, logratio_1: torch.Tensor, cost_0: torch.Tensor,
                            cost_1: torch.Tensor, beta: float) -> torch.Tensor:
    """Per pair P(the policy's choice is unsafe) = p_0 σ(c_0) + (1 − p_0) σ(c_1).

    σ(c) is the cost model's probability that a response is unsafe: the sign loss −log σ(s·c) is logistic
    regression on the unsafe label, so σ(c) estimates P(unsafe | x, y). Values in [0, 1]. (B,)"""
    p0 = policy_preference(logratio_0, logratio_1, beta)
    with torch.no_grad():
        return p0 * torch.sigmoid(cost_0) + (1 - p0) * torch.sigmoid(cost_1)


def unsafe_probability_floor(cost_0: torch.Tensor, cost_1: torch.Tensor) -> torch.Tensor:
    """min(σ(c_0), σ(c_1)) (B,): the lowest `pair_unsafe_probability` any policy reaches on the pair (all mass
    on the safer answer). A target rate below the floor's mean can never be met by the batch estimator."""
    with torch.no_grad():
        return torch.minimum(torch.sigmoid(cost_0), torch.sigmoid(cost_1))


def constraint_terms(kind: str, logratio_0: torch.Tensor, logratio_1: torch.Tensor, cost_0: torch.Tensor,
                     cost_1: torch.Tensor, beta: float,
                     harmful: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, weights), each (B,), of the constraint J_C = Σ w·v / Σ w:

        cost                 v = p_0 c_0 + (1−p_0) c_1,        w = 1            (the seed; cost units)
        harmful_cost         the same v,                       w = harmful      (a: harmful prompts only)
        unsafe_rate          v = p_0 σ(c_0) + (1−p_0) σ(c_1),  w = 1            (b: a probability)
        harmful_unsafe_rate  the same v as unsafe_rate,        w = harmful      (a + b)
        unsafe_choice        v = P(choose the costlier answer), w = |σ(c_0) − σ(c_1)|

`unsafe_choice` = Σ_b (v_b − min(σ(c_0), σ(c_1))) / Σ_b |σ(c_0) − σ(c_1)|: with a confident cost model, the
share of safe-vs-unsafe pairs on which the policy prefers the unsafe answer. Pairs of two safe (benign) or
two unsafe answers weigh ~0, so it needs no harmful flag, does not move with the data mix and has floor 0.

    `harmful` (B,) bool: the data's is_harmful_prompt flag; None = the cost model's flag, max(c_0, c_1) > 0
    (some answer to the prompt is judged unsafe). The threshold d of `lagrange_update` is in cost units for
    the *_cost kinds and a target rate in [0, 1] (e.g. 0.05) for the others.

    p_0 is `policy_preference(logratio_0, logratio_1, beta)`: pass ρ_i and β_ori for the seed's DPO-implicit
    preference (0.5 at the reference, whatever the reference does), or the policy's own log π_θ(y_i|x) and
    β = 1 for its actual choice between the two answers (docs/constraint.md compares them).
    """
    if kind not in CONSTRAINT_KINDS:
        raise ValueError(f"constraint kind must be one of {CONSTRAINT_KINDS} (got {kind!r})")
    if kind == "unsafe_choice":
        p0 = policy_preference(logratio_0, logratio_1, beta)
        with torch.no_grad():
            s0, s1 = torch.sigmoid(cost_0), torch.sigmoid(cost_1)
            values = torch.where(s0 >= s1, p0, 1 - p0)  # probability of choosing the costlier answer
            return values, (s0 - s1).abs()
    if kind.endswith("cost"):
        values = pair_expected_cost(logratio_0, logratio_1, cost_0, cost_1, beta)
    else:
        values = pair_unsafe_probability(logratio_0, logratio_1, cost_0, cost_1, beta)
    if kind.startswith("harmful"):
        flag = harmful if harmful is not None else torch.maximum(cost_0, cost_1) > 0
        weights = flag.to(values.dtype)
    else:
        weights = torch.ones_like(values)
    return values.detach(), weights.detach()


def weighted_safe_mm_dpo_loss(helpful_logits: torch.Tensor, safety_logits: torch.Tensor,
                              beta_helpful: torch.Tensor, beta_safety: torch.Tensor, lam: torch.Tensor,
                              kl: torch.Tensor | None = None, kl_coeff: float = 0.0) -> dict[str, torch.Tensor]:
    """Safe-MM-DPO with a multiplier per record (per-category constraints, `dpo/constraints.py`):

        L = mean_b [ (L_H,b + λ_b · L_S,b) / (1 + λ_b) ] + kl_coeff · KL,

    L_H,b, L_S,b as in `safe_mm_dpo_loss`; lam: (B,) λ_b ≥ 0 (no gradient). With every λ_b = λ it equals
    `safe_mm_dpo_loss(..., lam=λ)`. Returns scalar means {"loss", "loss_helpful", "loss_safety", "loss_kl"}.
    """
    lam = lam.detach().to(helpful_logits.dtype)
    loss_h = -F.logsigmoid(beta_helpful * helpful_logits)  # (B,)
    loss_s = -F.logsigmoid(beta_safety * safety_logits)  # (B,)
    loss_kl = kl.mean() if kl is not None else helpful_logits.new_zeros(())
    total = ((loss_h + lam * loss_s) / (1.0 + lam)).mean() + kl_coeff * loss_kl
    return {"loss": total, "loss_helpful": loss_h.mean(), "loss_safety": loss_s.mean(), "loss_kl": loss_kl}


def sampled_unsafe_rate(costs: torch.Tensor, harmful: torch.Tensor | None = None,
                        hard: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, weights) (N,) of the on-policy J_C: answers sampled from the policy, scored by the cost model.

    values = [c > 0] (hard: the cost model's verdict, what an evaluation counts) or σ(c) (soft); weights =
    `harmful` (the prompts' flag) or 1. J_C = Σ w·v / Σ w is then the policy's harmful-compliance rate as
    the cost model judges it, the very metric the benchmark reports, and a target such as 0.05 reads as
    such. The soft form never reaches 0: a cost model that scores safe answers at c = −3 leaves σ = 0.047
    per answer, which is why the hard verdict is the default here.
    """
    with torch.no_grad():
        values = (costs > 0).to(costs.dtype) if hard else torch.sigmoid(costs)
        weights = harmful.to(costs.dtype) if harmful is not None else torch.ones_like(costs)
    return values, weights
