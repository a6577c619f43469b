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


def select_best(points: list[dict], threshold: float = 0.8, tol: float = 1e-9) -> dict:
    """Apply the selection rule to evaluated points (`id`, `safety_rate`, `helpfulness`, in grid order).

    Returns {status: selected|none_passed|empty, best, reason, passing, ties, pareto}. `ties` lists the points
    that shared the deciding helpfulness (within `tol`) when the tie had to be broken.
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
        best = max(tied, key=lambda p: (p["safety_rate"], -order[p["id"]]))
        reason = (f"safety {best['safety_rate']:.3f} > {threshold:g}; highest helpfulness "
                  f"{best['helpfulness']:.3f} of {len(passing)} passing point(s)")
        if len(tied) > 1:
            same_safety = [p for p in tied if abs(p["safety_rate"] - best["safety_rate"]) <= tol]
            reason += (f"; tie on helpfulness between {', '.join(p['id'] for p in tied)} broken by "
                       + ("grid order (safety tied too)" if len(same_safety) > 1 else "the higher safety rate"))
        return {**out, "status": "selected", "best": best["id"], "reason": reason,
                "ties": [p["id"] for p in tied] if len(tied) > 1 else []}
    best = max(points, key=lambda p: (p["safety_rate"], p["helpfulness"], -order[p["id"]]))
    return {**out, "status": "none_passed", "best": best["id"], "ties": [],
            "reason": (f"no point has safety rate > {threshold:g} (best {best['safety_rate']:.3f}); "
                       f"fallback: the safest point, {best['id']}; consider a larger lambda_init or more epochs")}
