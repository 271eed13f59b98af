"""LINAS in a huge space: hypervolume against budget on an OFA-sized stand-in, and the search overhead.

The stand-in (a development problem, not OFA itself): the real gated space of
``ElasticMobileNet.from_preset("imagenet")`` (46 genes, about 5 x 10^20
genotypes), accuracy a smooth, non-separable function of the active genes and
the exact MACs, latency the MACs (and 7x7 kernels) in whole milliseconds.
Each search's measured front is scored by its hypervolume as a share of a
reference front's: a long pymoo NSGA-II run (150 generations of 200) on the
true objectives. Overhead is the search's time outside evaluations per evaluation.

    python benchmarks/linas_scale.py [--budget 500] [--seeds 2] [--strategies linas nsga2 random]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from _common import write_result  # noqa: E402

CHECKPOINTS = (60, 100, 300, 500, 1000)


class StandIn:
    """The OFA-sized development problem: gated MobileNet space, made-up accuracy, MACs-based whole-ms latency."""

    def __init__(self):
        from sliver.core import Objective
        from sliver.elastic.mobilenet import ElasticMobileNet

        self.net = ElasticMobileNet.from_preset("imagenet")
        self.space = self.net.space
        self.mix = np.random.default_rng(12345).normal(size=(self.space.n_features, 6)) / np.sqrt(12)
        self.objectives = [Objective("accuracy", "max", "%", "expensive"),
                           Objective("latency_ms", "min", "ms", "expensive", additive=True)]

    def evaluate(self, config: dict) -> dict:
        macs = self.net.costs(config)["macs"]
        s = self.space.features(config) @ self.mix
        accuracy = (58 + 22 * (1 - np.exp(-0.9 * np.log(macs / 4e7))) + 1.5 * np.tanh(s[0]) * np.tanh(s[1]) + np.sin(s[2])
                    + 0.8 * s[3] * s[4] / (1 + abs(s[3] * s[4])) + 0.5 * np.tanh(s[5]))
        active = self.space.active_mask(config)["ks"]
        n7 = sum(1 for k, a in zip(config["ks"], active) if a and k == 7)
        return {"accuracy": float(accuracy), "latency_ms": float(np.round(macs / 6e6 * (1 + 0.03 * n7)))}

    def to_min(self, values: list[dict]) -> np.ndarray:
        return np.array([[-v["accuracy"], v["latency_ms"]] for v in values]).reshape(-1, 2)

    def reference_front(self) -> np.ndarray:
        """The front of a long NSGA-II run on the true objectives (30,000 evaluations)."""
        from pymoo.core.problem import Problem
        from pymoo.optimize import minimize

        from sliver.search.evolutionary import make_algorithm
        from sliver.search.hv import nondominated

        card, seen, problem = self.space.gene_cardinalities, [], self

        class True_(Problem):
            def __init__(self):
                super().__init__(n_var=len(card), n_obj=2, xl=np.zeros(len(card)), xu=card - 1, vtype=int)

            def _evaluate(self, x, out, *args, **kwargs):
                out["F"] = problem.to_min([problem.evaluate(problem.space.decode(r)) for r in np.rint(x).astype(int)])
                seen.append(out["F"])

        algo = make_algorithm("nsga2", 200, 2)
        minimize(True_(), algo, ("n_gen", 150), seed=0, verbose=False)
        F = np.concatenate(seen)
        return F[nondominated(F)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--strategies", nargs="+", default=["linas", "nsga2", "random"])
    args = ap.parse_args()

    from sliver.search import Search
    from sliver.search.hv import hypervolume

    problem = StandIn()
    t0 = time.time()
    ref = problem.reference_front()
    lo, hi = ref.min(0), ref.max(0)
    hv = lambda F: hypervolume((F - lo) / (hi - lo), np.full(2, 1.1))  # noqa: E731 - the reference front's scale
    full = hv(ref)
    print(f"reference front: {len(ref)} points from 30,000 NSGA-II evaluations ({time.time() - t0:.0f} s)", flush=True)
    runs = []
    for strategy in args.strategies:
        for seed in range(args.seeds):
            result = Search(problem.space, problem.objectives, evaluate=problem.evaluate, evaluate_name="linas-scale-stand-in-v1",
                            strategy=strategy, budget=args.budget, seed=seed).run()
            F = problem.to_min([p.values for p in result.points if p.ok])
            run = {"strategy": strategy, "seed": seed, "evaluations": len(F),
                   "hv_ratio": {b: hv(F[:b]) / full for b in CHECKPOINTS if b <= len(F)},
                   "overhead_s_per_eval": result.search_seconds / max(result.n_evaluations, 1)}
            runs.append(run)
            ratios = ", ".join(f"{b}: {r:.3f}" for b, r in run["hv_ratio"].items())
            print(f"{strategy} seed {seed}: HV ratio {ratios}; overhead {run['overhead_s_per_eval']:.3f} s/eval", flush=True)
    table = []
    for strategy in args.strategies:
        rs = [r for r in runs if r["strategy"] == strategy]
        table.append({"strategy": strategy, "seeds": len(rs),
                      "mean_hv_ratio": {b: float(np.mean([r["hv_ratio"][b] for r in rs])) for b in rs[0]["hv_ratio"]},
                      "mean_overhead_s_per_eval": float(np.mean([r["overhead_s_per_eval"] for r in rs]))})
    by = {row["strategy"]: row for row in table}
    budgets = [b for b in (100, 300, 500, 1000) if b <= args.budget]
    linas = by.get("linas")
    if linas is None:
        figure, met = "no LINAS run", False
    else:
        others = [row for s, row in by.items() if s != "linas"]
        above = all(linas["mean_hv_ratio"][b] > row["mean_hv_ratio"][b] for b in budgets for row in others)
        ratios = "/".join(f"{linas['mean_hv_ratio'][b]:.3f}" for b in budgets)
        rivals = "; ".join(f"{row['strategy']} " + "/".join(f"{row['mean_hv_ratio'][b]:.3f}" for b in budgets) for row in others)
        overhead = linas["mean_overhead_s_per_eval"]
        targets = {100: 0.85, 500: 0.95, 1000: 0.98}  # issue 24's, set for OFA itself
        met = above and overhead <= 0.1 and all(linas["mean_hv_ratio"][b] >= t for b, t in targets.items() if b in budgets)
        figure = (f"LINAS HV ratio at {'/'.join(map(str, budgets))} evaluations {ratios} ({rivals}); "
                  f"overhead {overhead:.3f} s/eval")
    write_result("linas_scale", figure, "LINAS >= 0.85 / 0.95 / 0.98 of the reference hypervolume at 100 / 500 / 1000 evaluations, above "
                 "NSGA-II and random at every budget; overhead <= 0.1 s/eval", met, table, runs=runs,
                 wall_s=round(time.time() - t0, 1), load=os.getloadavg()[0],
                 note="stand-in problem (the real gated OFA MobileNet space, made-up accuracy, MACs-based whole-ms latency); "
                      "shared 2-core machine; overhead = time outside evaluations")
    print(figure)


if __name__ == "__main__":
    main()
