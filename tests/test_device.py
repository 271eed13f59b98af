"""The latency worker for another device (sliver.device): torch-free, refused on another fingerprint, used by a search.

The worker runs as a separate process on 127.0.0.1 in which only the standard
library, sliver and what the ``device`` and ``openvino`` extras install (with
their own dependencies) can be imported, as on a device set up as the README
says: ``pip install --no-deps sliver`` and the extra's packages; torch fails.
"""

import importlib.metadata
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from test_measure_model import ToySupernet
from torch import nn

from sliver.config import ConfigError
from sliver.errors import UserError
from sliver.measure.hardware import HardwareTarget, _machine
from sliver.measure.latency import export_onnx, onnx_latency
from sliver.measure.model import ModelEvaluator
from sliver.search import Search
from sliver.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
#: a meta-path hook that makes every import of torch fail, then the given code
NO_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked here: a device worker must not need it")
sys.meta_path.insert(0, _NoTorch())
"""
FAST = dict(warmup=2, warmup_s=0.05, min_repeats=10, max_repeats=60, max_seconds=1.0)




def device_modules() -> set[str]:
    """Top-level modules of the distributions the ``device`` and ``openvino`` extras install, dependencies included."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    todo, seen = [Requirement(r) for r in extras["device"] + extras["openvino"]], set()
    while todo:
        name = canonicalize_name(todo.pop().name)
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):  # not an optional extra of theirs
                todo.append(req)
    return {module for module, dists in importlib.metadata.packages_distributions().items()
            if any(canonicalize_name(d) in seen for d in dists)} | {"sliver"}


#: a meta-path hook that makes every import of an installed distribution's module fail, but sliver's and the device extras'
DEVICE_ONLY = f"""
import sys
BLOCKED = {sorted(set(importlib.metadata.packages_distributions()) - device_modules())!r}
class _DeviceOnly:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in BLOCKED:
            raise ImportError(top + " is blocked here: a device has only sliver and the device extra")
sys.meta_path.insert(0, _DeviceOnly())
"""


def run_without_torch(code: str, timeout: float = 120, hook: str = NO_TORCH) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", hook + code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def remote_target(url: str, preset: str = "cpu-ort-b1") -> HardwareTarget:
    return HardwareTarget.preset(preset, remote=url, **FAST)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """``python -m sliver.device serve --port 0`` with only the device extras; yields its URL and stops it afterwards."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    code = "import runpy\nsys.argv = ['sliver.device', 'serve', '--port', '0']\nrunpy.run_module('sliver.device', run_name='__main__')"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", DEVICE_ONLY + code], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "worker on http://" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, f"the worker did not start:\n{log.read_text()}"
            time.sleep(0.1)
        yield log.read_text().split()[4]  # "sliver device worker on http://127.0.0.1:PORT (...)"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text(), log.read_text()


# ------------------------------------------------------------------ fast
def test_worker_side_never_imports_torch():
    code = ("import sliver.device, sliver.measure.timing\n"
            "from sliver.measure.hardware import HardwareTarget\n"
            "fp = HardwareTarget.preset('cpu-ort-b1').fingerprint()\n"
            "assert 'torch' not in sys.modules and 'torch' not in fp, fp\n"
            "from sliver.cli import main\n"  # `sliver device serve` too: the command line imports torch lazily
            "sys.argv = ['sliver', 'device', 'serve', '--help']\n"
            "main()\n")
    proc = run_without_torch(code)
    assert proc.returncode == 0, proc.stderr
    assert "--port" in proc.stdout


def test_python_m_sliver_device_needs_only_the_device_extra():
    # torch, SQLAlchemy, pandas, scikit-learn, typer ... are not on the device: the worker's imports must not reach them
    assert {"torch", "sqlalchemy", "pandas", "sklearn", "typer"} < set(importlib.metadata.packages_distributions()) - device_modules()
    code = ("import sliver.device, sliver.measure.timing, sliver.measure.base\n"
            "from sliver.measure.hardware import HardwareTarget\n"
            "print(HardwareTarget.preset('cpu-ov-b1').fingerprint())\n")
    proc = run_without_torch(code, hook=DEVICE_ONLY)
    assert proc.returncode == 0, proc.stderr
    blocked = run_without_torch("import sqlalchemy\n", hook=DEVICE_ONLY)  # the hook really blocks
    assert "sqlalchemy is blocked here" in blocked.stderr


def test_local_fingerprints_keep_their_torch_version():
    # read from the package metadata without importing torch, and equal to what stores already hold
    assert _machine()["torch"] == torch.__version__


def test_remote_target_spellings():
    target = HardwareTarget.parse("cpu-ort-b1@127.0.0.1:8780")
    assert (target.name, target.backend, target.remote) == ("cpu-ort-b1", "onnxruntime", "http://127.0.0.1:8780")
    assert HardwareTarget.preset("cpu-ov-b1", remote="http://10.0.0.7:8780/").remote == "http://10.0.0.7:8780"
    with pytest.raises(ConfigError, match="remote worker times ONNX models"):
        HardwareTarget.parse("cpu-torch-b1@127.0.0.1:8780")
    with pytest.raises(ConfigError, match="http://HOST:PORT"):
        HardwareTarget.parse("cpu-ort-b1@tcp://127.0.0.1:8786")


def test_unreachable_worker_is_one_line():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="no sliver device worker answers") as info:
        remote_target(f"127.0.0.1:{port}").fingerprint()
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ against the worker
def test_search_measures_on_the_worker_with_its_fingerprint(worker, tmp_path):
    net = ToySupernet()
    target = remote_target(worker)
    worker_fp = target.fingerprint()
    assert "torch" not in worker_fp  # the worker's own fingerprint: it has no torch
    evaluator = ModelEvaluator(net, target, ["latency_ms", "params"])
    assert evaluator.fingerprint == target.fingerprint_hash() != HardwareTarget.preset("cpu-ort-b1").fingerprint_hash()
    store = ResultStore(f"sqlite:///{tmp_path / 'remote.db'}")
    result = Search(net.space, evaluator, ["latency_ms", "params"], "random", budget=4, seed=0, store=store,
                    study_name="remote").run()
    assert result.n_evaluations == 4 and result.n_failed == 0
    trials = store.trials(store.get_study("remote").id)
    assert len(trials) == 4
    for t in trials:
        m = store.get_measurements(t.config_key, evaluator.supernet_hash, {"latency_ms": evaluator.fingerprint})["latency_ms"]
        assert m.value > 0 and m.stats["fingerprint"] == evaluator.fingerprint


def test_a_worker_with_another_fingerprint_is_refused(worker, tmp_path):
    net = ToySupernet()
    cfg = net.max_config()
    onnx = export_onnx(net.extract(cfg), net.example_input(cfg))
    with pytest.raises(UserError, match="not the study's 0000000000000000") as info:
        onnx_latency(onnx, net.example_input(cfg), remote_target(worker), fingerprint="0" * 16)
    assert "\n" not in str(info.value)
    # a study begun here on the local CPU is not continued on the worker
    store = ResultStore(f"sqlite:///{tmp_path / 's.db'}")
    local = ModelEvaluator(net, HardwareTarget.preset("cpu-ort-b1", **FAST), ["latency_ms"])
    Search(net.space, local, ["latency_ms"], "random", budget=1, store=store, study_name="s").run()
    remote = ModelEvaluator(net, remote_target(worker), ["latency_ms"])
    with pytest.raises(UserError, match="different fingerprint"):
        Search(net.space, remote, ["latency_ms"], "random", budget=2, store=store, study_name="s").run()
    # a target the worker's machine cannot run is its one-line answer
    with pytest.raises(UserError, match="OpenVINOExecutionProvider is not available") as info:
        remote_target(worker, "cpu-ort-openvino-b1").fingerprint()
    assert "\n" not in str(info.value)


def test_remote_latencies_rank_like_local_ones(worker):
    # convolutions whose widths double (about 4x the work each): latencies far enough apart that the
    # ranking survives a busy shared machine
    target = remote_target(worker)
    local = HardwareTarget.preset("cpu-ort-b1", **FAST)
    remote_ms, local_ms = [], []
    for width in (8, 16, 32, 64, 128):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(width, width, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        example = torch.randn(1, 3, 16, 16)
        onnx = export_onnx(model, example)
        remote_ms.append(onnx_latency(onnx, example, target).median_ms)
        local_ms.append(onnx_latency(onnx, example, local).median_ms)
    assert min(remote_ms) > 0
    # loose on purpose: this machine is shared; the benchmark asks tau >= 0.9 on a quiet one
    assert kendalltau(remote_ms, local_ms).statistic > 0.5, (remote_ms, local_ms)
    assert np.all(np.isfinite(remote_ms))


def test_quantised_models_are_timed_on_the_worker_only_under_the_study_fingerprint(worker, tmp_path):
    from sliver.data import load_dataset
    from sliver.elastic.mobilenet import ElasticMobileNet
    from sliver.quant import QuantEvaluator

    torch.manual_seed(0)
    net = ElasticMobileNet.from_preset("tiny")
    evaluator = QuantEvaluator(net, load_dataset("digits", seed=0), target=remote_target(worker), objectives=["latency_ms"],
                               calib_samples=32, workdir=tmp_path)
    config = evaluator.space.sample(0)
    ok = evaluator.measure(config, ["latency_ms"])
    assert ok.values["latency_ms"] > 0, ok.errors
    assert ok.stats["latency_ms"]["fingerprint"] == evaluator.fingerprint  # timed by the worker
    evaluator.fingerprint = "0" * 16  # a study begun on another machine
    refused = evaluator.measure(config, ["latency_ms"])
    assert "latency_ms" not in refused.values
    assert "not the study's 0000000000000000" in str(refused.errors["latency_ms"])


def test_readme_installs_exactly_the_device_extras():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lines = (ROOT / "README.md").read_text().splitlines()
    # the packages of each pinned `pip install a==1 b==2  # comment` line
    pinned = {tuple(line.split("#")[0].split()[2:]) for line in lines if line.startswith("pip install ") and "==" in line}
    assert tuple(extras["device"]) in pinned and tuple(extras["openvino"]) in pinned, pinned
