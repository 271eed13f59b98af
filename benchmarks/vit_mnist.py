"""Supernet quality of the elastic ViT on MNIST-5k: extracted sub-networks vs the same architectures trained alone.

The supernet-quality benchmark of the training issue (``supernet_quality.py``)
run for the ViT family with ``examples/vit_mnist.yaml``; writes
``benchmarks/results/vit_mnist.json``. Each sub-network's gap is averaged over
``--seeds`` training seeds (default 3): on the 750-image validation split one
seed's gap moves by +-1-2 points (one image is 0.13 points).

    python benchmarks/vit_mnist.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO  # noqa: E402
from supernet_quality import run  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds; gaps averaged per sub-network")
    args = parser.parse_args()
    run(str(REPO / "examples" / "vit_mnist.yaml"), str(REPO / "runs" / "vit_mnist"), "vit_mnist", seeds=args.seeds)
