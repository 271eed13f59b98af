"""Shared test set-up: one intra-op thread (small models run far faster and more
repeatably that way on a busy 2-core machine), and artifacts in one folder."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Folder for files a person may want to look at after a run (screenshots, reports)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread per test module (restored after): small models run fastest that way and
    OpenMP does not spin on a shared machine. Modules that never imported torch are left alone."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
