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
