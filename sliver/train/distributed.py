"""Data-parallel super-network training with ``torch.distributed`` (gloo, CPU).

``sliver train --nproc N`` (or ``torchrun --nproc-per-node N -m sliver.train.distributed cfg.yaml``)
runs N ranks. Each rank builds the same super-network from the same seed and
draws the same sub-networks every step (the sampling rule's seeded generator
is the same on every rank); every rank takes the same global batch of
``train.batch_size`` images from the seeded epoch order and trains on its own
``batch_size / N`` slice of it; before each optimiser step the gradients are
all-reduced (averaged), so the ranks stay identical and one step equals a step
of a single process on the whole batch. Batch-norm statistics are the
exception: each rank normalises over its own slice, as DDP does without
SyncBatchNorm, so the loss curve matches a single process closely, not
bit-for-bit; running statistics are averaged across ranks after every step.
``train.grad_clip`` clips each rank's gradient before averaging.

Rank 0 alone evaluates, writes ``metrics.jsonl`` and checkpoints (the other
ranks wait for it at each epoch's end); a restarted run resumes on every rank
from rank 0's checkpoint, with the same number of ranks or another.
"""

from __future__ import annotations

import os
import random
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sliver.config import ConfigError
from sliver.train.trainer import Trainer


class DistributedTrainer(Trainer):
    """A :class:`Trainer` that is one rank of an initialised ``torch.distributed`` process group."""

    def __init__(self, config, out_dir, **kwargs: Any) -> None:
        if not dist.is_initialized():
            raise RuntimeError("DistributedTrainer needs torch.distributed initialised (use train_distributed or torchrun)")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if config.train.batch_size % self.world:
            raise ConfigError(
                f"field 'train.batch_size': {config.train.batch_size} images cannot be split over {self.world} processes; "
                f"use a multiple of {self.world}"
            )
        kwargs["progress"] = kwargs.get("progress", True) and self.rank == 0
        super().__init__(config, out_dir, **kwargs)
        self.shard = config.train.batch_size // self.world
        # every rank starts from rank 0's weights and buffers, whatever its own RNG or checkpoint did
        with torch.no_grad():
            for t in self._synced():
                dist.broadcast(t, src=0)
        # after the trainer's backward passes (and clipping), right before the update
        self.optimizer.register_step_pre_hook(lambda *_: self._average_gradients())

    def _targets(self):
        """Rank 0 chooses the 'fixed' rule's targets (one search, one store); the others read what it wrote."""
        if self.rank == 0:
            configs = super()._targets()
        dist.barrier()
        return configs if self.rank == 0 else super()._targets()

    def _synced(self) -> list[torch.Tensor]:
        return list(self.supernet.parameters()) + [b for b in self.supernet.buffers() if b.is_floating_point()]

    def _average_gradients(self) -> None:
        """Average every gradient over the ranks in one flat all-reduce (a parameter no pick used counts as 0)."""
        params = [p for p in self.supernet.parameters() if p.requires_grad]  # not a frozen teacher's
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def _average_buffers(self) -> None:
        buffers = [b for b in self.supernet.buffers() if b.is_floating_point()]
        if not buffers:
            return
        with torch.no_grad():
            flat = torch.cat([b.reshape(-1) for b in buffers])
            dist.all_reduce(flat)
            flat /= self.world
            offset = 0
            for b in buffers:
                b.copy_(flat[offset:offset + b.numel()].view_as(b))
                offset += b.numel()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One step on this rank's slice of the global batch; returns the loss averaged over the ranks."""
        part = slice(self.rank * self.shard, (self.rank + 1) * self.shard)
        loss = super().train_step(x[part], y[part])
        self._average_buffers()
        mean = torch.tensor([loss], dtype=torch.float64)
        dist.all_reduce(mean)
        return float(mean.item() / self.world)

    def _end_epoch(self, epoch: int, train_seconds: float) -> dict[str, Any]:
        if self.rank == 0:
            record = super()._end_epoch(epoch, train_seconds)
        else:
            record = {}
            self.metrics_done, self._epoch_loss = epoch + 1, [0.0, 0]
        # the others wait for rank 0's evaluation and checkpoint, then take its random state (evaluating
        # drew from it), so that a run resumed from that checkpoint continues exactly as this one does
        states = [random.getstate(), np.random.get_state(), torch.get_rng_state()]
        dist.broadcast_object_list(states, src=0)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        return record

    def save(self) -> str:
        """Rank 0 writes the checkpoint; the other ranks write nothing."""
        return super().save() if self.rank == 0 else ""

    def _trim_metrics(self) -> None:
        if self.rank == 0:
            super()._trim_metrics()
        dist.barrier()

    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        summary = super().fit(max_steps)
        dist.barrier()  # nobody reads the checkpoint before rank 0 has written it
        return summary


# ---------------------------------------------------------------------- launching
def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, config_path: str, out: str, progress: bool, max_steps: int | None, results) -> None:
    from sliver.train.config import load_run_config

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        run_config, text = load_run_config(config_path)
        if not run_config.train.threads:
            torch.set_num_threads(1)  # N ranks on N cores: torch's own threads would oversubscribe
        trainer = DistributedTrainer(run_config, out, config_text=text, progress=progress)
        summary = trainer.fit(max_steps)
        if rank == 0:
            results.put(summary)
    finally:
        dist.destroy_process_group()


def train_distributed(config_path: str | Path, out: str | Path, nproc: int, progress: bool = True,
                      max_steps: int | None = None) -> dict[str, Any]:
    """Train the config at ``config_path`` on ``nproc`` local processes (gloo); returns rank 0's summary."""
    import torch.multiprocessing as mp

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    from sliver.train.config import load_run_config

    run_config, _ = load_run_config(config_path)  # one-line config errors before any process starts
    if run_config.train.batch_size % nproc:
        raise ConfigError(
            f"field 'train.batch_size': {run_config.train.batch_size} images cannot be split over {nproc} processes; "
            f"use a multiple of {nproc}"
        )
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.spawn(_rank_main, args=(nproc, free_port(), str(config_path), str(out), progress, max_steps, results), nprocs=nproc)
    return results.get()


def main(argv: list[str] | None = None) -> None:
    """``torchrun --nproc-per-node N -m sliver.train.distributed config.yaml [out_dir]``: one rank per process."""
    from sliver.train.config import load_run_config

    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: torchrun --nproc-per-node N -m sliver.train.distributed config.yaml [out_dir]")
    config_path = Path(args[0])
    out = Path(args[1]) if len(args) > 1 else Path("runs") / config_path.stem
    dist.init_process_group("gloo")  # torchrun's environment: MASTER_ADDR/PORT, RANK, WORLD_SIZE
    try:
        run_config, text = load_run_config(config_path)
        if not run_config.train.threads:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
        summary = DistributedTrainer(run_config, out, config_text=text).fit()
        if dist.get_rank() == 0:
            print(f"done: {summary['step']} steps, checkpoint {summary['checkpoint']} (hash {summary.get('hash')})")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
