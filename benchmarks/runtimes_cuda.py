"""Latency on a CUDA GPU beside the same machine's CPU runtimes: repeatability, rank agreement, front changes, transfer.

The CUDA half of ``benchmarks/runtimes.py``, for a machine with a GPU (that script
times this CPU's runtimes and skips the CUDA targets without one). ``--n`` seeded
random sub-networks of the ImageNet-size elastic MobileNet (untrained: latency does
not depend on the weights' values) are timed ``--repeats`` times, round-robin, on
PyTorch on CUDA at batch 1 and 8 (``cuda-torch-b1``, ``cuda-torch-b8``: CUDA events
after synchronisation), ONNX Runtime's CUDA execution provider (``cuda-ort-b1``,
skipped with the reason when the installed onnxruntime has no CUDA provider), and
the same machine's CPU runtimes (``cpu-torch-b1``, ``cpu-ort-b1``). Figures:

* repeatability: median over networks of the CV of the repeated medians, per target (target <= 3 %);
* Kendall tau of the latencies between every pair of targets;
* the share of one target's MACs x latency front dominated under another's latencies
  (MACs stand in for accuracy, as in ``runtimes.py``);
* few-shot transfer to each CUDA target from the CPU runtimes (``RuntimeTransfer``
  with k networks measured on the GPU), beside fitting on the k alone and the MACs.

Without a CUDA device it says why and writes nothing.

The timings are saved to ``benchmarks/results/runtimes_cuda_timings.json`` before any
figure is computed; ``--measurements`` recomputes the figures from that file.

    python benchmarks/runtimes_cuda.py [--n 40] [--repeats 3] [--k 5,10] [--max-seconds 2] [--measurements FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import available_targets, skip, write_result  # noqa: E402
from benchmarks.runtimes import front_change, measure, transfer_figures  # noqa: E402
from sliver.elastic.mobilenet import ElasticMobileNet  # noqa: E402
from sliver.measure.hardware import HardwareTarget  # noqa: E402
from sliver.predict.transfer import MIN_SOURCE_NETWORKS  # noqa: E402

GPU_TARGETS = ("cuda-torch-b1", "cuda-torch-b8", "cuda-ort-b1")
CPU_TARGETS = ("cpu-torch-b1", "cpu-ort-b1")
RAW = Path(__file__).resolve().parent / "results" / "runtimes_cuda_timings.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="sub-networks")
    ap.add_argument("--repeats", type=int, default=3, help="measurements of each network on each target")
    ap.add_argument("--k", default="5,10", help="networks measured on the held-out GPU target")
    ap.add_argument("--draws", type=int, default=5, help="random draws of the k networks")
    ap.add_argument("--max-seconds", type=float, default=2.0, help="cap on one measurement's timed loop")
    ap.add_argument("--targets", default=",".join(GPU_TARGETS + CPU_TARGETS),
                    help="targets to time; the transfer predicts the cuda-* ones from the cpu-* ones")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--measurements", help="recompute the figures from the timings file an earlier run saved")
    args = ap.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    names = [t.strip() for t in args.targets.split(",") if t.strip()]

    torch.manual_seed(0)
    net = ElasticMobileNet.from_preset("imagenet").eval()
    configs = net.space.sample(np.random.default_rng(args.seed), args.n)
    started = time.perf_counter()
    if args.measurements:
        # the figures again from an earlier run's timings: a GPU is lent for minutes, the analysis needs none
        saved = json.loads(Path(args.measurements).read_text())
        if saved["configs"] != configs:
            raise SystemExit(f"--measurements {args.measurements}: timed other networks; rerun with its --n and --seed")
        medians = {t: np.array(m) for t, m in saved["medians"].items()}
        targets = {t: HardwareTarget.preset(t, max_seconds=args.max_seconds) for t in medians}
        skipped, device, fingerprints = saved["skipped"], saved["device"], saved["fingerprints"]
    else:
        targets, skipped = available_targets(names, max_seconds=args.max_seconds)
        if not any(n.startswith("cuda-") for n in targets):
            skip("no CUDA target can run here (" + "; ".join(f"{n}: {r}" for n, r in skipped.items()) + ")")
        device, fingerprints = torch.cuda.get_device_name(), {t: v.fingerprint() for t, v in targets.items()}
        print(f"timing {args.n} MobileNets on {', '.join(targets)}, {args.repeats} times each", flush=True)
        medians, _ = measure(net, configs, targets, args.repeats, args.seed)
        # kept before any analysis, so that a failure after the timing loses none of it
        RAW.parent.mkdir(parents=True, exist_ok=True)
        RAW.write_text(json.dumps({"configs": configs, "medians": {t: m.tolist() for t, m in medians.items()},
                                   "skipped": skipped, "device": device, "fingerprints": fingerprints}))
        print(f"timings saved to {RAW}", flush=True)
    gpu = [n for n in targets if n.startswith("cuda-")]
    lat = {t: np.median(m, axis=1) for t, m in medians.items()}
    cv = {t: float(np.median(m.std(axis=1) / m.mean(axis=1))) for t, m in medians.items()} if next(iter(medians.values())).shape[1] > 1 else {}
    taus = {f"{a} vs {b}": float(kendalltau(lat[a], lat[b]).statistic) for a, b in combinations(targets, 2)}
    macs = np.array([net.costs(c)["macs"] for c in configs], dtype=float)
    fronts = front_change(macs, lat, list(targets))
    cpu = [n for n in targets if n.startswith("cpu-")]
    transfer = []
    if cpu and args.n >= MIN_SOURCE_NETWORKS:
        transfer = transfer_figures(net, configs, lat, [(g, cpu) for g in gpu], ks, args.draws, args.seed)

    print("median CV " + ", ".join(f"{t} {100 * v:.2f}%" for t, v in cv.items()), flush=True)
    print("Kendall tau " + ", ".join(f"{k} {v:.3f}" for k, v in taus.items()), flush=True)
    print("front dominated " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in fronts.items()), flush=True)
    tr = [t for t in transfer if t["k"] == max(ks)]
    parts = [
        f"{device}, {args.n} MobileNets: median CV % " + ", ".join(f"{t} {100 * v:.1f}" for t, v in cv.items()),
        "tau " + ", ".join(f"{k} {v:.2f}" for k, v in taus.items() if "cuda" in k),
        f"up to {100 * max(v for k, v in fronts.items() if 'cuda' in k):.0f}% of a front dominated between a GPU and another target",
    ]
    if tr:
        parts.append(f"transfer k={max(ks)} from the CPU runtimes tau " + ", ".join(
            f"{t['held_out']} {t['tau_transfer_random']:.2f} (k alone {t['tau_k_alone_ridge']:.2f}, MACs {t['tau_macs']:.2f})"
            for t in tr))
    if skipped:
        parts.append("skipped: " + "; ".join(f"{n} ({r})" for n, r in skipped.items()))
    figure = " | ".join(parts)
    met = bool(cv) and all(cv[t] <= 0.03 for t in gpu)
    write_result(
        "runtimes_cuda", figure, "median CV <= 3 % on every CUDA target", met,
        {"median_cv": cv, "kendall_tau": taus, "front_dominated_share": fronts, "transfer": transfer,
         "tau_macs": {t: float(kendalltau(macs, lat[t]).statistic) for t in lat},
         "networks": [{"config": c, "macs": int(macs[i]), **{t: medians[t][i].round(4).tolist() for t in targets}}
                      for i, c in enumerate(configs)]},
        device=device,
        skipped=skipped, seconds=round(time.perf_counter() - started, 1),
        protocol={t: v.model_dump() for t, v in targets.items()},
        fingerprints=fingerprints,
        accuracy_proxy="MACs (untrained super-network); any accuracy model increasing in MACs gives the same fronts",
    )
    print(figure)


if __name__ == "__main__":
    main()
