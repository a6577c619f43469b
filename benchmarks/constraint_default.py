"""Which J_C should be the default? Safe-MM-DPO trained with each candidate constraint on both toy worlds, no
hand-tuned threshold (each kind's own default: 0 for the cost kinds, 0.05 for the rate kinds), over seeds.

    python benchmarks/constraint_default.py --run-root /tmp/cdef [--seeds 2] [--worlds demo,tradeoff]

Each world is `safealign compare` on its config (configs/demo.yaml, configs/tradeoff.yaml) with the method
`safe_mm_dpo` and one constraint variant at a time (`dpo.constraint`, `dpo.constraint_choice`,
`dpo.cost_threshold` reset to the kind's default, `dpo.lambda_lr`: 0.05 for cost units, 0.5 for rates);
the seeds' data, base, SFT and judges are built once and shared by the variants. Prints a Markdown table:
safety, over-refusal, helpfulness (seed means), λ at the end, validation J_C at the end and whether it met d.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))

from safealign.compare.run import run_compare  # noqa: E402
from safealign.config import load_config  # noqa: E402

CONFIGS = {"demo": REPO / "configs" / "demo.yaml", "tradeoff": REPO / "configs" / "tradeoff.yaml"}
# (label, constraint, choice, lambda_lr)
VARIANTS = [("cost (seed)", "cost", "implicit", 0.05), ("harmful_cost", "harmful_cost", "implicit", 0.05),
            ("harmful_unsafe_rate", "harmful_unsafe_rate", "policy", 0.5),
            ("unsafe_choice implicit", "unsafe_choice", "implicit", 0.5),
            ("unsafe_choice policy", "unsafe_choice", "policy", 0.5)]


def _mean(points, key):
    vals = [p[key] for p in points if p.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def _fmt(x, digits=3):
    return "–" if x is None else f"{x:.{digits}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-root", required=True, help="folder for the two worlds' runs")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--worlds", default="demo,tradeoff")
    ap.add_argument("--variants", help="comma-separated labels (default: all)")
    args = ap.parse_args(argv)
    chosen = [v for v in VARIANTS if not args.variants or v[0] in args.variants.split(",")]
    rows = []
    for world in args.worlds.split(","):
        base = load_config(CONFIGS[world]).with_overrides([("run.run_dir", str(Path(args.run_root) / world)),
                                                           ("run.report_to", ["none"])])
        for label, kind, choice, lr in chosen:
            cfg = base.with_overrides([("dpo.constraint", kind), ("dpo.constraint_choice", choice),
                                       ("dpo.cost_threshold", None), ("dpo.lambda_lr", lr)])
            t0 = time.time()
            out = Path(args.run_root) / world / "variants" / kind / choice
            res = run_compare(cfg, methods=["safe_mm_dpo"], seeds=args.seeds, output_dir=out)
            pts = res["methods"]["safe_mm_dpo"]["per_seed"]
            base_pts = res["base"]["per_seed"]
            d = cfg.section("dpo").cost_threshold
            met = sum(p.get("jc_val") is not None and p["jc_val"] <= d for p in pts)
            rows.append([world, label, f"{d:g}", f"{lr:g}", _fmt(_mean(base_pts, "safety")),
                         _fmt(_mean(pts, "safety")), _fmt(_mean(pts, "over_refusal")),
                         _fmt(_mean(base_pts, "helpfulness")), _fmt(_mean(pts, "helpfulness")),
                         _fmt(_mean(pts, "lambda_final"), 2), _fmt(_mean(pts, "jc_val")), f"{met}/{len(pts)}",
                         f"{time.time() - t0:.0f}"])
            print("| " + " | ".join(rows[-1]) + " |", flush=True)
    print("\n| world | constraint | d | λ_lr | base safety | safety | over-refusal | base helpful | helpfulness "
          "| λ end | val J_C end | met d | s |")
    print("|" + "---|" * 13)
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
