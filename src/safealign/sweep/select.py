"""The sweep's selection rule and Pareto front: pure functions of evaluated points (no I/O)."""

from __future__ import annotations


def point_id(lambda_init: float, w: float) -> str:
    return f"lambda{lambda_init:g}_w{w:g}"


def pareto_front(points: list[dict]) -> list[str]:
    """Ids of the points no other point beats on both safety and helpfulness (>= both, > one)."""
    front = []
    for p in points:
        dominated = any(q["safety_rate"] >= p["safety_rate"] and q["helpfulness"] >= p["helpfulness"]
                        and (q["safety_rate"] > p["safety_rate"] or q["helpfulness"] > p["helpfulness"])
                        for q in points if q is not p)
        if not dominated:
            front.append(p["id"])
    return front


def _pairwise(p: dict) -> tuple[float, float]:
    """(validation helpful choice, −validation J_C), −inf where a point lacks them (larger is better)."""
    hc, jc = p.get("val_helpful_choice"), p.get("val_jc")
    return (hc if hc is not None else float("-inf"), -jc if jc is not None else float("-inf"))


def _broken_by(tied: list[dict], best: dict, tol: float) -> str:
    same_safety = [p for p in tied if abs(p["safety_rate"] - best["safety_rate"]) <= tol]
    if len(same_safety) == 1:
        return "the higher safety rate"
    keys = {p["id"]: _pairwise(p) for p in same_safety}
    if sum(keys[p["id"]] == keys[best["id"]] for p in same_safety) == 1 and keys[best["id"]][0] > float("-inf"):
        hc, jc = best.get("val_helpful_choice"), best.get("val_jc")
        return (f"the validation pairwise metrics (safety tied too; helpful choice {hc:.4f}"
                + (f", J_C {jc:.4f})" if jc is not None else ")"))
    return "grid order (safety tied too)"


def select_best(points: list[dict], threshold: float = 0.8, tol: float = 1e-9) -> dict:
    """Apply the selection rule to evaluated points (`id`, `safety_rate`, `helpfulness`, in grid order).

    Returns {status: selected|none_passed|empty, best, reason, passing, ties, pareto}. `ties` lists the points
    that shared the deciding helpfulness (within `tol`) when the tie had to be broken: by the higher safety
    rate, then — when the points carry them — by the trainer's continuous validation metrics (the policy's
    preference for the better answer on agreeing pairs `val_helpful_choice`, then the lower constraint
    `val_jc`), then by grid order. Rates judged from generations are coarse on a small validation set; the
    pairwise metrics of the same split separate points whose answers coincide.
    """
    if not points:
        return {"status": "empty", "best": None, "reason": "no evaluated points", "passing": [], "ties": [],
                "pareto": []}
    order = {p["id"]: i for i, p in enumerate(points)}
    passing = [p for p in points if p["safety_rate"] > threshold]
    out = {"threshold": threshold, "passing": [p["id"] for p in passing], "pareto": pareto_front(points)}
    if passing:
        top = max(p["helpfulness"] for p in passing)
        tied = [p for p in passing if abs(p["helpfulness"] - top) <= tol]
        best = max(tied, key=lambda p: (p["safety_rate"], *_pairwise(p), -order[p["id"]]))
        reason = (f"safety {best['safety_rate']:.3f} > {threshold:g}; highest helpfulness "
                  f"{best['helpfulness']:.3f} of {len(passing)} passing point(s)")
        if len(tied) > 1:
            reason += f"; tie on helpfulness between {', '.join(p['id'] for p in tied)} broken by " + _broken_by(
                tied, best, tol)
        return {**out, "status": "selected", "best": best["id"], "reason": reason,
                "ties": [p["id"] for p in tied] if len(tied) > 1 else []}
    best = max(points, key=lambda p: (p["safety_rate"], p["helpfulness"], -order[p["id"]]))
    return {**out, "status": "none_passed", "best": best["id"], "ties": [],
            "reason": (f"no point has safety rate > {threshold:g} (best {best['safety_rate']:.3f}); "
                       f"fallback: the safest point, {best['id']}; consider a larger lambda_init or more epochs")}
