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


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """A store URL on a fresh SQLite file, and on the PostgreSQL server that ``SLIVER_TEST_POSTGRES_URL``
    names (that case skips without it; ``bash .ci/postgres start`` prints one)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url = os.environ.get("SLIVER_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: set SLIVER_TEST_POSTGRES_URL (bash .ci/postgres start prints one)")
    return url


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
