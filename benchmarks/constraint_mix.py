"""J_C of every candidate constraint (docs/constraint.md) on both toy worlds, at three data mixes, for three
pairwise policies: shows which definitions move with the share of benign prompts and which have a floor.

    python benchmarks/constraint_mix.py [--pairs 4000]      # prints the Markdown table (~12 s on a 2-core CPU)

Costs are label-derived (+3 unsafe, −3 safe: a confident, correct cost model) and p_0 is set directly, so no
model is trained: the table isolates the definition of J_C from the estimator's noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from safealign import losses  # noqa: E402
from safealign.toy import ToyJudge, generate_toy_world  # noqa: E402
from safealign.toy.tradeoff import generate_tradeoff_world  # noqa: E402

POLICIES = ("reference", "helpful-0.9", "safer-0.95")


def table(rows: list[dict], harmful: list[bool]) -> dict:
    unsafe = torch.tensor([[not r["is_response_0_safe"], not r["is_response_1_safe"]] for r in rows])
    c0, c1 = torch.where(unsafe[:, 0], 3.0, -3.0), torch.where(unsafe[:, 1], 3.0, -3.0)
    better = torch.tensor([r["better_response_id"] for r in rows])
    safer = torch.tensor([r["safer_response_id"] for r in rows])
    p0s = {"reference": torch.full((len(rows),), 0.5), "helpful-0.9": torch.where(better == 0, 0.9, 0.1),
           "safer-0.95": torch.where(safer == 0, 0.95, 0.05)}
    out = {}
    for name, p0 in p0s.items():
        logit = torch.log(p0) - torch.log1p(-p0)  # p_0 = σ(1 · (logit − 0))
        for kind in losses.CONSTRAINT_KINDS:
            v, w = losses.constraint_terms(kind, logit, torch.zeros_like(logit), c0, c1, 1.0,
                                           torch.tensor(harmful))
            out[(name, kind)] = float((v * w).sum() / w.sum())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4000)
    args = ap.parse_args(argv)
    print("| world | harmful share | policy | " + " | ".join(losses.CONSTRAINT_KINDS) + " |")
    print("|---|---|---|" + "---|" * len(losses.CONSTRAINT_KINDS))
    for world, shares in (("toy", (0.3, 0.5, 0.7)), ("tradeoff", (0.2, 0.4, 0.6))):
        for share in shares:
            if world == "toy":
                rows = generate_toy_world(num_pairs=args.pairs, seed=0, harmful_fraction=share)
                judge = ToyJudge()
                flags = [judge.is_harmful_prompt(r["prompt"]) for r in rows]
            else:
                rows = generate_tradeoff_world(num_pairs=args.pairs, seed=0, harmful_fraction=share, annotate=True)
                flags = [r["tradeoff"]["prompt_type"] == "harmful" for r in rows]
            t = table(rows, flags)
            for pol in POLICIES:
                cells = " | ".join(f"{t[(pol, k)]:.3f}" for k in losses.CONSTRAINT_KINDS)
                print(f"| {world} | {share} | {pol} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
