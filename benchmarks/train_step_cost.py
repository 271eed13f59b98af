"""Cost of one sandwich training step (largest + smallest + 2 random sub-networks) over one step of the largest alone.

Both steps run on the same MNIST-5k batch with the same trainer (forward,
backward and optimiser step), interleaved so that load on the shared machine
hits both alike; the figure is the ratio of the medians. The per-network
forward+backward times say where the time goes.

    python benchmarks/train_step_cost.py [--reps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import write_result  # noqa: E402

from sliver.config import validate  # noqa: E402
from sliver.train import Trainer  # noqa: E402
from sliver.train.config import RunConfig  # noqa: E402
from sliver.train.sampling import Pick, SamplingRule  # noqa: E402


class LargestOnly(SamplingRule):
    """The baseline: a step that trains only the largest network."""

    name = "largest"

    def picks(self, step: int) -> list[Pick]:
        return [Pick(self.space.max_config(), "max", teacher=True)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench_step_cost")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = validate(RunConfig, {"supernet": {"family": "mobilenet", "preset": "tiny"}, "data": {"name": "mnist5k"},
                                  "train": {"batch_size": 64, "sampling": {"rule": "sandwich", "n": 2}}})
    trainer = Trainer(config, args.out, progress=False)
    sandwich = trainer.rule
    largest = LargestOnly(trainer.supernet.space)
    x, y = trainer.data.train.tensors[0][:64], trainer.data.train.tensors[1][:64]
    steps = {"sandwich": [], "largest": []}
    for rep in range(args.reps + 3):  # the first 3 rounds warm up
        for name, rule in (("sandwich", sandwich), ("largest", largest)):
            trainer.rule = rule
            t = timed(lambda: trainer.train_step(x, y))
            if rep >= 3:
                steps[name].append(t)
    # where the time goes: forward+backward of each kind of pick on its own
    net = trainer.supernet
    per_pick: dict[str, list[float]] = {"max": [], "min": [], "random": []}
    trainer.rule = sandwich
    for _ in range(args.reps):
        for pick in sandwich.picks(0):
            cfg = net.activate(pick.config)

            def fwd_bwd(cfg=cfg):
                F.cross_entropy(net(net.prepare_input(x, cfg)), y).backward()

            per_pick[pick.role].append(timed(fwd_bwd))
    net.zero_grad(set_to_none=True)
    med = {k: statistics.median(v) for k, v in steps.items()}
    ratio = med["sandwich"] / med["largest"]
    parts = {k: statistics.median(v) * 1000 for k, v in per_pick.items()}
    table = [
        {"what": "sandwich step (max + min + 2 random, optimiser step)", "median_ms": med["sandwich"] * 1000},
        {"what": "largest-only step (optimiser step)", "median_ms": med["largest"] * 1000},
        *({"what": f"forward+backward of one '{k}' sub-network", "median_ms": v} for k, v in parts.items()),
    ]
    for row in table:
        print(f"{row['what']:<58} {row['median_ms']:8.1f} ms")
    note = ("machine shared with other engineers' runs; timings interleaved and reported as medians; "
            f"{args.reps} reps, batch 64, {args.threads} threads, MNIST-5k, ElasticMobileNet preset tiny")
    write_result("train_step_cost", round(ratio, 3), "<= 2.5", ratio <= 2.5, table, note=note,
                 per_pick_ms=parts, reps=args.reps)
    print(f"sandwich step (4 sub-networks) / largest-network step = {ratio:.2f} (target <= 2.5)")


if __name__ == "__main__":
    main()
