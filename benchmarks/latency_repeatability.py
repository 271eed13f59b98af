"""Latency repeatability: coefficient of variation of repeated measurements, and torch-vs-ONNX Runtime rank agreement.

For 20 seeded sub-networks of the tiny MNIST super-network (untrained: latency
does not depend on the weights' values), each sub-network is measured 5 times
on each backend (PyTorch eager and ONNX Runtime CPU, batch 1, 1 thread),
interleaved round-robin so that slow drifts of a shared machine spread over all
sub-networks instead of biasing some. Each measurement is the median of the
HardwareTarget protocol (warm-up, timed runs until the relative IQR is below
5%, capped). The figure is the median over sub-networks of the CV of the 5
medians, per backend (target <= 3% on an idle machine), and Kendall's tau
between the two backends' rankings.

    python benchmarks/latency_repeatability.py [--subnets 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import write_result  # noqa: E402
from sliver.elastic.mobilenet import ElasticMobileNet  # noqa: E402
from sliver.measure.hardware import HardwareTarget  # noqa: E402
from sliver.measure.latency import export_onnx, onnx_latency, torch_latency  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subnets", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    net = ElasticMobileNet.from_preset("tiny").eval()
    rng = np.random.default_rng(args.seed)
    configs = [net.space.sample(rng) for _ in range(args.subnets)]
    targets = {b: HardwareTarget.preset(f"cpu-{'ort' if b == 'onnxruntime' else 'torch'}-b1") for b in ("torch", "onnxruntime")}
    models, inputs, onnx_models = [], [], []
    for cfg in configs:
        model, x = net.extract(cfg), net.example_input(cfg, 1, args.seed)
        models.append(model)
        inputs.append(x)
        onnx_models.append(export_onnx(model, x))

    load_before = os.getloadavg()
    medians = {b: [[] for _ in configs] for b in targets}
    runs = {b: [[] for _ in configs] for b in targets}
    for rep in range(args.repeats):
        for i in range(len(configs)):
            for backend, target in targets.items():
                if backend == "torch":
                    res = torch_latency(models[i], inputs[i], target)
                else:
                    res = onnx_latency(onnx_models[i], inputs[i], target)
                medians[backend][i].append(res.median_ms)
                runs[backend][i].append(res.n_runs)
        print(f"round {rep + 1}/{args.repeats} done", flush=True)

    table = []
    for i, cfg in enumerate(configs):
        row = {"config": cfg, "macs": net.costs(cfg)["macs"]}
        for b in targets:
            m = np.asarray(medians[b][i])
            row[b] = {"medians_ms": m.round(5).tolist(), "median_ms": float(np.median(m)),
                      "cv": float(m.std() / m.mean()), "runs": runs[b][i]}
        table.append(row)
    cv = {b: statistics.median(r[b]["cv"] for r in table) for b in targets}
    tau, p = kendalltau([r["torch"]["median_ms"] for r in table], [r["onnxruntime"]["median_ms"] for r in table])
    met = all(v <= 0.03 for v in cv.values())
    figure = f"median CV torch {100 * cv['torch']:.2f}%, onnxruntime {100 * cv['onnxruntime']:.2f}%; Kendall tau torch vs ORT {tau:.3f}"
    write_result(
        "latency_repeatability", figure, "median CV <= 3% on each backend (idle machine)", met, table,
        median_cv={b: cv[b] for b in targets}, kendall_tau=float(tau), kendall_p=float(p),
        protocol={b: t.model_dump() for b, t in targets.items()},
        load_average_1min={"before": load_before[0], "after": os.getloadavg()[0]},
        note="tiny MNIST super-network, untrained weights (latency does not depend on weight values); "
             "2-core machine shared with other engineers' test runs",
    )
    print(figure)


if __name__ == "__main__":
    main()
