"""Does the runtime change the pick? One LINAS search per runtime, then every runtime's pick timed on every runtime.

For each CPU runtime at batch 1 and one thread (``cpu-torch-b1``, ``cpu-ort-b1``,
``cpu-ov-b1``; a runtime not installed is skipped with the reason), the same seeded
LINAS search (``--budget`` evaluations) runs over the ImageNet-size elastic MobileNet's
space with two objectives: accuracy (maximised) and the latency measured on that
runtime (``Search(space, objectives, evaluate=fn)``, latency declared additive). Each
search's *pick* is its fastest measured network whose accuracy is at least the bar
(``--bar``: a share of the way from the smallest network's accuracy to the largest's).
Then every pick is timed again on every runtime, ``--repeats`` times round-robin, and
the figure is, per runtime, the speed-up of its own pick over each other runtime's
pick timed on it, at the same accuracy bar.

Accuracy: the super-network is untrained (latency does not depend on the weights'
values), so the accuracy is a model of the configuration. ``--accuracy macs`` uses
the network's MACs (any accuracy that grows with MACs ranks alike);
``--accuracy ofa`` uses Once-for-All's published ImageNet accuracy predictor for this
space (``sliver.bench.ofa``; needs ``../shared/data/ofa``).

    python benchmarks/runtime_picks.py [--budget 40] [--bar 0.5] [--repeats 5] [--accuracy macs|ofa]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import available_targets, skip, write_result  # noqa: E402
from sliver.core import Objective  # noqa: E402
from sliver.elastic.mobilenet import ElasticMobileNet  # noqa: E402
from sliver.measure.hardware import HardwareTarget  # noqa: E402
from sliver.measure.latency import export_onnx, onnx_latency, torch_latency  # noqa: E402
from sliver.search import Search  # noqa: E402

TARGETS = ("cpu-torch-b1", "cpu-ort-b1", "cpu-ov-b1")


def super_network_and_accuracy(kind: str):
    """The untrained super-network to time, ``config -> accuracy`` for it, and the accuracy's name."""
    torch.manual_seed(0)
    if kind == "macs":
        net = ElasticMobileNet.from_preset("imagenet").eval()
        return net, (lambda config: net.costs(config)["macs"] / 1e6), "MACs (M), standing in for accuracy"
    if kind == "ofa":
        from sliver.bench.ofa import MBV3_RESOLUTIONS, OFAMobileNetV3

        problem = OFAMobileNetV3()  # one-line error when ../shared/data/ofa is absent
        # OFA's predictor scores the width-1.2 network at its own resolutions: time that network
        net = ElasticMobileNet.from_preset("imagenet", width_mult=problem.width_mult,
                                           resolutions=list(MBV3_RESOLUTIONS)).eval()
        if net.space != problem.space:
            raise SystemExit("the ImageNet MobileNet's space differs from OFA-MobileNetV3's; the predictor does not apply")
        return net, (lambda config: problem.values(config)["accuracy"]), "OFA's ImageNet accuracy predictor (%)"
    raise SystemExit(f"--accuracy: unknown {kind!r}; choose macs or ofa")


def latency_ms(net, config: dict, target: HardwareTarget, seed: int) -> float:
    """The target's stable median for ``config``'s extracted network at the target's batch size."""
    model, x = net.extract(config).eval(), net.example_input(config, target.batch_size, seed)
    if target.backend == "torch":
        return torch_latency(model, x, target).median_ms
    return onnx_latency(export_onnx(model, x), x, target).median_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=40, help="evaluations of each runtime's search")
    ap.add_argument("--bar", type=float, default=0.5, help="accuracy bar, as a share from the smallest to the largest network")
    ap.add_argument("--repeats", type=int, default=5, help="timings of every pick on every runtime")
    ap.add_argument("--accuracy", default="macs", help="macs or ofa (see the module docstring)")
    ap.add_argument("--max-seconds", type=float, default=2.0, help="cap on one measurement's timed loop")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    targets, skipped = available_targets(TARGETS, max_seconds=args.max_seconds)
    if len(targets) < 2:
        skip("fewer than two runtimes can run here: " + "; ".join(f"{n}: {r}" for n, r in skipped.items()))

    net, accuracy, accuracy_name = super_network_and_accuracy(args.accuracy)
    low, high = accuracy(net.space.min_config()), accuracy(net.space.max_config())
    bar = low + args.bar * (high - low)
    objectives = [Objective("accuracy", "max"), Objective("latency_ms", "min", "ms", additive=True)]
    load_before, started = os.getloadavg(), time.perf_counter()

    picks, searches = {}, {}
    for name, target in targets.items():
        t0 = time.perf_counter()
        search = Search(net.space, objectives, budget=args.budget, seed=args.seed, strategy="linas",
                        evaluate=lambda c, t=target: {"accuracy": accuracy(c), "latency_ms": latency_ms(net, c, t, args.seed)},
                        evaluate_name=f"mobilenet-{args.accuracy}-{name}")
        result = search.run()
        eligible = [p for p in result.points if p.ok and p.values["accuracy"] >= bar]
        if not eligible:
            raise SystemExit(f"{name}: no measured network reached the accuracy bar {bar:.3f}; lower --bar or raise --budget")
        pick = min(eligible, key=lambda p: p.values["latency_ms"])
        picks[name] = pick.config
        searches[name] = {"seconds": round(time.perf_counter() - t0, 1), "n_evaluations": result.n_evaluations,
                          "front": [p.values for p in result.front], "pick": pick.values}
        print(f"{name}: pick {pick.values['latency_ms']:.2f} ms at accuracy {pick.values['accuracy']:.3f} "
              f"(bar {bar:.3f}, {result.n_evaluations} evaluations, {searches[name]['seconds']} s)", flush=True)

    # every distinct pick on every runtime, round-robin, so that drift on a shared machine spreads over all of them;
    # runtimes that picked the same network share its timings (their speed-up is exactly 1)
    distinct = {net.space.key(c): c for c in picks.values()}
    timed: dict[tuple[str, str], list[float]] = {(runner, key): [] for runner in targets for key in distinct}
    for _ in range(args.repeats):
        for key, config in distinct.items():
            for runner, target in targets.items():
                timed[runner, key].append(latency_ms(net, config, target, args.seed))
    timings = {(runner, owner): timed[runner, net.space.key(picks[owner])] for runner in targets for owner in picks}
    median = {key: float(np.median(v)) for key, v in timings.items()}
    speedups = {f"{runner}: own pick vs {owner}'s": median[runner, owner] / median[runner, runner]
                for runner in targets for owner in picks if owner != runner}
    for key, value in speedups.items():
        print(f"  {key} {value:.3f}x", flush=True)

    short = lambda n: n.removeprefix("cpu-").removesuffix("-b1")  # noqa: E731
    figure = (f"LINAS ({args.budget} evaluations) per runtime, accuracy {accuracy_name} >= {bar:.3f}: own pick's speed-up "
              "over the other runtimes' picks, timed on that runtime: "
              + ", ".join(f"{short(r)} vs {short(o)}'s {median[r, o] / median[r, r]:.2f}x"
                          for r in targets for o in picks if o != r))
    if skipped:
        figure += " | skipped: " + "; ".join(f"{n} ({r})" for n, r in skipped.items())
    write_result(
        "runtime_picks", figure, "information: how much a runtime's own pick gains over picks made on other runtimes",
        all(v >= 1.0 for v in speedups.values()),
        {"speedups": speedups, "median_ms": {f"{r} timing {o}'s pick": v for (r, o), v in median.items()},
         "timings_ms": {f"{r} timing {o}'s pick": v for (r, o), v in timings.items()},
         "picks": picks, "distinct_picks": len(distinct), "searches": searches},
        accuracy=accuracy_name, bar=bar, accuracy_range=[low, high], skipped=skipped,
        seconds=round(time.perf_counter() - started, 1), protocol={t: v.model_dump() for t, v in targets.items()},
        load_average_1min={"before": load_before[0], "after": os.getloadavg()[0]},
    )
    print(figure)


if __name__ == "__main__":
    main()
