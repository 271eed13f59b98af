"""Measurement cost: seconds per full evaluation of a sub-network, and the time of the same evaluation served from the store.

A full evaluation of one config of the tiny MNIST super-network is: BN
recalibration + top-1 accuracy on the whole MNIST-5k validation split (750
images), latency on PyTorch eager and on ONNX Runtime (export included; batch
1, 1 thread), MACs, params, model size and peak memory. It runs through
:func:`sliver.measure.evaluator.evaluate` with a fresh SQLite store; then the
same evaluation is repeated and served from the store (a cache hit, no model
run). The baseline of the ratio is the full evaluation measured in the same
run. Without ``--checkpoint`` the super-network is untrained (accuracy is then
near chance, but it costs the same to measure).

    python benchmarks/measure_cost.py [--configs 5] [--checkpoint ckpt.pt]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import write_result  # noqa: E402
from sliver.data import load_dataset  # noqa: E402
from sliver.elastic.mobilenet import ElasticMobileNet  # noqa: E402
from sliver.measure.evaluator import evaluate  # noqa: E402
from sliver.measure.model import ModelEvaluator  # noqa: E402
from sliver.store import ResultStore  # noqa: E402

ALL = ["accuracy", "latency_ms", "macs", "params", "model_size", "peak_memory"]


def stored_seconds(store: ResultStore, ev: ModelEvaluator, key: str) -> dict[str, float]:
    """Seconds each objective of ``key`` took to measure, as ``evaluate`` stored them."""
    found = store.get_measurements(key, ev.supernet_hash, {o.name: ev.fingerprint_for(o.name) for o in ev.objectives})
    return {name: m.seconds for name, m in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=5)
    parser.add_argument("--checkpoint", default=None, help="trained tiny super-network checkpoint (default: untrained)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    if args.checkpoint:
        from sliver.train.checkpoint import load_supernet

        net, info = load_supernet(args.checkpoint)
        data, net_hash, weights = load_dataset(**info["data"]), info["hash"], f"checkpoint {args.checkpoint}"
    else:
        net, data, net_hash, weights = ElasticMobileNet.from_preset("tiny"), load_dataset("mnist5k", seed=args.seed), None, "untrained"
    ev_torch = ModelEvaluator(net, "cpu-torch-b1", ALL, data=data, supernet_hash=net_hash, seed=args.seed)
    ev_ort = ModelEvaluator(net, "cpu-ort-b1", ["latency_ms"], data=data, supernet_hash=ev_torch.supernet_hash, seed=args.seed)
    configs = [net.space.sample(rng) for rng in [np.random.default_rng(args.seed + i) for i in range(args.configs)]]

    table = []
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(f"sqlite:///{tmp}/cost.db")
        for cfg in configs:
            row = {"config": cfg}
            for phase in ("full", "cache_hit"):
                t0 = time.perf_counter()
                a = evaluate(ev_torch, cfg, store)
                parts = stored_seconds(store, ev_torch, a.key) if phase == "full" else {}
                b = evaluate(ev_ort, cfg, store)
                if phase == "full":
                    parts["latency_ms_onnxruntime"] = stored_seconds(store, ev_ort, b.key)["latency_ms"]
                    parts["latency_ms_torch"] = parts.pop("latency_ms")
                row[f"{phase}_s"] = time.perf_counter() - t0
                row[f"{phase}_cached"] = a.cached and b.cached
                if phase == "full":
                    assert a.ok and b.ok, (a.errors, b.errors)
                    row["parts_s"] = parts
                    row["values"] = {**a.values, "latency_ms_onnxruntime": b.values["latency_ms"]}
            table.append(row)
            print(f"full {row['full_s']:.2f} s, cache hit {1000 * row['cache_hit_s']:.1f} ms", flush=True)
        store.close()

    full = statistics.median(r["full_s"] for r in table)
    hit = statistics.median(r["cache_hit_s"] for r in table)
    parts = {k: statistics.median(r["parts_s"][k] for r in table) for k in table[0]["parts_s"]}
    met = all(r["cache_hit_cached"] and not r["full_cached"] for r in table)
    figure = (f"full evaluation {full:.2f} s per sub-network (median of {len(table)}), "
              f"cache hit {1000 * hit:.1f} ms ({full / hit:.0f}x faster)")
    write_result(
        "measure_cost", figure, "every repeat is a cache hit (no model run); report the cost of both", met, table,
        median_full_s=full, median_cache_hit_s=hit, speedup=full / hit, median_parts_s=parts,
        validation_images=len(data.val), weights=weights, load_average_1min=os.getloadavg()[0],
        note="tiny MNIST super-network; 2-core machine shared with other engineers' test runs, "
             "so absolute seconds are noisy and the ratio is the figure",
    )
    print(figure)


if __name__ == "__main__":
    main()
