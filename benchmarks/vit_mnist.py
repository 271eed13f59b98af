"""Supernet quality of the elastic ViT on MNIST-5k: extracted sub-networks vs the same architectures trained alone.

The supernet-quality benchmark of the training issue (``supernet_quality.py``)
run for the ViT family with ``examples/vit_mnist.yaml``; writes
``benchmarks/results/vit_mnist.json``.

    python benchmarks/vit_mnist.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO  # noqa: E402
from supernet_quality import run  # noqa: E402

if __name__ == "__main__":
    run(str(REPO / "examples" / "vit_mnist.yaml"), str(REPO / "runs" / "vit_mnist"), "vit_mnist")
