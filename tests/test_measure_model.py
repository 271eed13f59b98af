"""ModelEvaluator, latency, hardware targets and ONNX export, on a tiny stand-in super-network."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from sliver.config import ConfigError
from sliver.elastic.base import Supernet
from sliver.measure import timing as timing_mod
from sliver.measure.evaluator import evaluate
from sliver.measure.hardware import HardwareTarget
from sliver.measure.latency import export_onnx, measure_latency
from sliver.measure.model import ModelEvaluator, model_size_bytes, peak_memory_bytes
from sliver.measure.timing import ort_session, time_runs
from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore


class ToySupernet(Supernet):
    """conv(1 -> w) + BN + ReLU + pool + linear(w -> 3); ``w`` and the input resolution ``r`` are elastic."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.space = SearchSpace([Dimension("w", (4, 8)), Dimension("r", (8, 12))])
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)
        self.forward_calls = 0

    def _set_active(self, config):
        self.w = config["w"]

    def forward(self, x):
        self.forward_calls += 1
        w = self.active_config["w"]
        y = F.conv2d(x, self.conv.weight[:w], self.conv.bias[:w], padding=1)
        y = F.batch_norm(y, self.bn.running_mean[:w], self.bn.running_var[:w], self.bn.weight[:w], self.bn.bias[:w],
                         self.training, 0.1, self.bn.eps)
        y = F.adaptive_avg_pool2d(F.relu(y), 1).flatten(1)
        return F.linear(y, self.fc.weight[:, :w], self.fc.bias)

    def input_shape(self, config, batch_size=1):
        return (batch_size, 1, config["r"], config["r"])

    def prepare_input(self, x, config):
        return F.interpolate(x, size=(config["r"], config["r"]), mode="bilinear", align_corners=False)

    def arch_config(self, config):
        return {"kind": "toy", "w": config["w"]}

    def extract(self, config):
        config = self.space.validate(config)
        w = config["w"]
        m = nn.Sequential(nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(w, 3))
        with torch.no_grad():
            m[0].weight.copy_(self.conv.weight[:w])
            m[0].bias.copy_(self.conv.bias[:w])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(m[1], name).copy_(getattr(self.bn, name)[:w])
            m[5].weight.copy_(self.fc.weight[:, :w])
            m[5].bias.copy_(self.fc.bias)
        return m.eval()

    def costs(self, config):
        w, r = config["w"], config["r"]
        params = (9 * w + w) + 2 * w + (3 * w + 3)
        return {"params": params, "macs": 9 * w * r * r + 3 * w}

    def supernet_config(self):
        return {"family": "toy"}


# ----------------------------------------------------------------------------- tests
FAST = dict(warmup=2, warmup_s=0.0, min_repeats=5, max_repeats=15, max_seconds=2.0)


def toy_data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 10, 10, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return SimpleNamespace(val=TensorDataset(x, y), calib=TensorDataset(x, y))


def counting_recalibrate(calls):
    def recalibrate(supernet, config, loader, batches):
        calls.append(supernet.space.key(config))
        supernet.activate(config)
        supernet.train()
        with torch.no_grad():
            for i, (x, _) in enumerate(loader):
                supernet(supernet.prepare_input(x, config))
                if i + 1 >= batches:
                    break
        supernet.eval()
    return recalibrate


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_latency_is_positive_finite_with_statistics(backend):
    net = ToySupernet()
    cfg = net.max_config()
    target = HardwareTarget(backend=backend, **FAST)
    res = measure_latency(net.extract(cfg), net.example_input(cfg), target)
    assert res.median_ms > 0 and math.isfinite(res.median_ms)
    assert res.iqr_ms >= 0 and math.isfinite(res.cv) and res.mean_ms > 0
    assert 3 <= res.n_runs <= FAST["max_repeats"]
    assert set(res.to_dict()) == {"median_ms", "iqr_ms", "mean_ms", "cv", "n_runs", "stable"}
    assert torch.get_num_threads() >= 1


def test_timing_stops_when_stable_or_out_of_time(monkeypatch):
    clock = {"t": 0, "step": 1000}

    def fake_ns():
        clock["t"] += clock["step"]
        return clock["t"]

    monkeypatch.setattr(timing_mod.time, "perf_counter_ns", fake_ns)  # the timing loop lives in timing.py
    # identical runs: IQR 0 -> stops at the first check after min_repeats
    res = time_runs(lambda: None, warmup=0, min_repeats=10, max_repeats=100, stability=0.05, max_seconds=60)
    assert res.stable and res.n_runs == 10 and res.iqr_ms == 0 and res.median_ms == pytest.approx(0.001)
    # each run "takes" one second: the two-second cap stops it at three runs
    clock["step"] = 10**9
    res = time_runs(lambda: None, warmup=0, min_repeats=10, max_repeats=100, stability=1e-9, max_seconds=2)
    assert not res.stable and res.n_runs == 3


def test_fingerprint_changes_with_threads_batch_backend():
    base = HardwareTarget.preset("cpu-ort-b1")
    assert base.backend == "onnxruntime" and base.batch_size == 1 and base.threads == 1
    fp = base.fingerprint()
    assert {"cpu", "cores", "os", "python", "torch", "onnxruntime"} <= set(fp)
    hashes = {
        base.fingerprint_hash(),
        HardwareTarget.preset("cpu-ort-b1-t2").fingerprint_hash(),
        HardwareTarget.preset("cpu-ort-b8").fingerprint_hash(),
        HardwareTarget.preset("cpu-torch-b1").fingerprint_hash(),
    }
    assert len(hashes) == 4
    # the timing protocol is not part of what a latency depends on
    assert HardwareTarget.preset("cpu-ort-b1", warmup=50).fingerprint_hash() == base.fingerprint_hash()
    with pytest.raises(ConfigError, match="unknown hardware target 'gpu-x'"):
        HardwareTarget.parse("gpu-x")
    with pytest.raises(ValueError, match="max_repeats"):
        HardwareTarget(min_repeats=10, max_repeats=5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_onnx_export_matches_pytorch(seed):
    net = ToySupernet(seed)
    cfg = net.space.sample(seed)
    model = net.extract(cfg)
    x = net.example_input(cfg, batch_size=4, seed=seed)
    session = ort_session(export_onnx(model, x))
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_evaluator_measures_everything_and_repeat_is_a_cache_hit(tmp_path):
    net, calls = ToySupernet(), []
    ev = ModelEvaluator(net, HardwareTarget.preset("cpu-torch-b1", **FAST), data=toy_data(),
                        recalibrate=counting_recalibrate(calls), calib_batches=2, batch_size=16)
    assert [o.name for o in ev.objectives] == ["accuracy", "latency_ms", "macs", "params", "model_size", "peak_memory"]
    assert ev.fingerprint_for("latency_ms") == ev.fingerprint and ev.fingerprint_for("accuracy") == "any"
    store = ResultStore(f"sqlite:///{tmp_path / 'm.db'}")
    study = store.get_or_create_study("toy", net.space, ev.objectives, ev.supernet_hash, ev.fingerprint)
    cfg = {"w": 4, "r": 12}
    first = evaluate(ev, cfg, store, study.id)
    assert first.ok and not first.cached, first.errors
    assert 0 <= first.values["accuracy"] <= 100 and first.values["latency_ms"] > 0
    assert first.values["params"] == net.costs(cfg)["params"] and first.values["macs"] == net.costs(cfg)["macs"]
    assert first.values["model_size"] == model_size_bytes(net.extract(cfg))
    assert first.stats["latency_ms"]["n_runs"] >= 3
    stored = store.get_measurements(first.key, ev.supernet_hash, {"latency_ms": ev.fingerprint})["latency_ms"]
    assert stored.stats["median_ms"] == first.values["latency_ms"] and stored.seconds > 0
    runs, forwards = dict(ev.runs), net.forward_calls
    again = evaluate(ev, cfg, store, study.id)
    assert again.cached and again.values == first.values
    assert dict(ev.runs) == runs and net.forward_calls == forwards and len(calls) == 1  # no model was run
    # another target re-measures only the hardware-dependent objectives
    ev2 = ModelEvaluator(net, HardwareTarget.preset("cpu-ort-b1", **FAST), data=toy_data(),
                         recalibrate=counting_recalibrate(calls), calib_batches=2)
    third = evaluate(ev2, cfg, store)
    assert set(third.measured) == {"latency_ms", "peak_memory"} and len(calls) == 1


def test_costs_alone_do_not_extract_the_model(monkeypatch):
    net = ToySupernet()
    extracted = []
    real = net.extract
    monkeypatch.setattr(net, "extract", lambda config: extracted.append(config) or real(config))
    ev = ModelEvaluator(net, HardwareTarget.preset("cpu-torch-b1", **FAST), objectives=["macs", "params", "model_size"])
    cfg = {"w": 4, "r": 12}
    assert ev.measure(cfg, ["macs", "params"]).values == {k: float(v) for k, v in net.costs(cfg).items()}
    assert extracted == []  # a search scores thousands of candidates' costs: no weights are copied for them
    assert ev.measure(cfg, ["macs", "model_size"]).values["model_size"] > 0 and len(extracted) == 1


def test_failing_objective_is_recorded_and_the_rest_measured(tmp_path, monkeypatch):
    import sliver.measure.model as model_mod

    def broken(*args, **kwargs):
        raise RuntimeError("ONNX export failed: unsupported operator")

    monkeypatch.setattr(model_mod, "measure_latency", broken)
    net = ToySupernet()
    ev = ModelEvaluator(net, "cpu-ort-b1", objectives=["latency_ms", "params", "model_size"])
    store = ResultStore(f"sqlite:///{tmp_path / 'f.db'}")
    results = [evaluate(ev, cfg, store) for cfg in net.space.enumerate()]
    assert all(r.errors == {"latency_ms": "RuntimeError: ONNX export failed: unsupported operator"} for r in results)
    assert all(set(r.values) == {"params", "model_size"} for r in results)
    assert store.count_measurements("failed") == 4 and store.count_measurements("ok") == 8


def test_accuracy_subset_and_timeout():
    net, calls = ToySupernet(), []
    data = toy_data(n=100)
    ev = ModelEvaluator(net, objectives=["accuracy"], data=data, accuracy_subset=0.3,
                        recalibrate=counting_recalibrate(calls), calib_batches=1, batch_size=10)
    out = ev.measure({"w": 8, "r": 8}, ["accuracy"])
    assert 0 <= out.values["accuracy"] <= 100 and out.stats["accuracy"]["samples"] == 30
    ev.timeout_s = -1.0  # already past the deadline: a clean TimeoutError, not a hang
    out = ev.measure({"w": 8, "r": 8}, ["accuracy"])
    assert out.errors["accuracy"].startswith("TimeoutError")
    with pytest.raises(ValueError, match="needs data"):
        ModelEvaluator(net, objectives=["accuracy"])
    with pytest.raises(ValueError, match="unknown objective 'speed'"):
        ModelEvaluator(net, objectives=["speed"])


def test_peak_memory_counts_weights_and_largest_layer():
    net = ToySupernet()
    cfg = {"w": 8, "r": 12}
    model = net.extract(cfg)
    x = net.example_input(cfg, batch_size=2)
    weights = sum(p.numel() * 4 for p in model.parameters()) + sum(b.numel() * b.element_size() for b in model.buffers())
    # the conv (input 2x1x12x12, output 2x8x12x12) or BN (2x8x12x12 in and out) is the largest layer
    assert peak_memory_bytes(model, x) == weights + 2 * (2 * 8 * 12 * 12 * 4)


def test_supernet_hash_follows_weights_not_bn_statistics():
    from sliver.measure.model import supernet_state_hash

    net = ToySupernet()
    h = supernet_state_hash(net)
    net.bn.running_mean.add_(1.0)
    assert supernet_state_hash(net) == h
    with torch.no_grad():
        net.fc.bias.add_(1.0)
    assert supernet_state_hash(net) != h


@pytest.mark.slow
def test_onnx_export_of_real_mobilenet_subnets_matches_pytorch():
    from sliver.elastic.mobilenet import ElasticMobileNet

    net = ElasticMobileNet.from_preset("tiny")
    for seed in (0, 1):
        cfg = net.space.sample(seed)
        model = net.extract(cfg)
        x = net.example_input(cfg, batch_size=2, seed=seed)
        got = ort_session(export_onnx(model, x)).run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-4)
