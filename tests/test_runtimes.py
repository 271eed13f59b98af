"""Deployment runtimes of a HardwareTarget: OpenVINO, ONNX Runtime execution providers, PyTorch on CUDA."""

import json
import math

import numpy as np
import onnxruntime
import pytest
import torch
from test_measure_model import FAST, ToySupernet
from typer.testing import CliRunner

from sliver.cli import app
from sliver.config import ConfigError
from sliver.errors import UserError
from sliver.measure.hardware import PRESET_EXAMPLES, HardwareTarget
from sliver.measure.latency import export_onnx, measure_latency, torch_latency
from sliver.measure.model import ModelEvaluator
from sliver.measure.timing import ort_session, time_runs

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")


@pytest.mark.parametrize("name, fields", [
    ("cpu-ov-b1", dict(device="cpu", backend="openvino", provider=None, batch_size=1, threads=1)),
    ("cpu-openvino-b4-t2", dict(device="cpu", backend="openvino", provider=None, batch_size=4, threads=2)),
    ("cpu-ort-b1", dict(device="cpu", backend="onnxruntime", provider="cpu", batch_size=1, threads=1)),
    ("cpu-ort-openvino-b1", dict(device="cpu", backend="onnxruntime", provider="openvino", batch_size=1)),
    ("cuda-torch-b8", dict(device="cuda", backend="torch", provider=None, batch_size=8, threads=1)),
    ("cuda-ort-b1", dict(device="cuda", backend="onnxruntime", provider="cuda", batch_size=1)),
    ("cuda-ort-tensorrt-b2-t4", dict(device="cuda", backend="onnxruntime", provider="tensorrt", batch_size=2, threads=4)),
])
def test_presets_parse(name, fields):
    target = HardwareTarget.parse(name)
    assert target.name == name and target.precision == "f32"
    assert {k: getattr(target, k) for k in fields} == fields


@pytest.mark.parametrize("name, message", [
    ("cuda-ov-b1", "backend openvino is measured on the CPU"),
    ("cpu-ort-cuda-b1", "provider 'cuda' runs on device 'cuda'"),
    ("cpu-torch-cuda-b1", "provider 'cuda' is an ONNX Runtime execution provider"),
    ("gpu-ov-b1", "unknown hardware target 'gpu-ov-b1'"),
])
def test_impossible_presets_are_one_line_config_errors(name, message):
    with pytest.raises(ConfigError, match=message) as info:
        HardwareTarget.parse(name)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="precision 'bf16': only backend openvino"):
        HardwareTarget.preset("cpu-ort-b1", precision="bf16")


def test_existing_cpu_fingerprints_keep_their_keys():
    # the stores and operator tables already hold latencies under these: the new fields must not move them
    for name in ("cpu-ort-b1", "cpu-torch-b8-t2"):
        fp = HardwareTarget.preset(name).fingerprint()
        assert not {"device", "provider", "precision", "openvino"} & set(fp)


def test_unavailable_provider_is_one_line_listing_the_available_ones():
    target = HardwareTarget.preset("cpu-ort-openvino-b1")
    if "OpenVINOExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the OpenVINO execution provider")
    with pytest.raises(UserError) as info:
        target.fingerprint()
    msg = str(info.value)
    assert "\n" not in msg and "hardware target 'cpu-ort-openvino-b1'" in msg
    assert "OpenVINOExecutionProvider is not available" in msg and "CPUExecutionProvider" in msg
    net = ToySupernet()
    with pytest.raises(UserError, match="OpenVINOExecutionProvider is not available"):
        measure_latency(net.extract(net.max_config()), net.example_input(net.max_config()), target)


@no_cuda
@pytest.mark.parametrize("name", ["cuda-torch-b8", "cuda-ort-b1"])
def test_cuda_targets_without_a_gpu_are_one_line_user_errors(name):
    net = ToySupernet()
    with pytest.raises(UserError) as info:
        ModelEvaluator(net, name, objectives=["latency_ms"])
    assert str(info.value) == (f"hardware target '{name}': no CUDA device is available "
                               "(torch.cuda.is_available() is False); use a cpu-* target")
    with pytest.raises(UserError, match="no CUDA device"):
        torch_latency(net.extract(net.max_config()), net.example_input(net.max_config()), HardwareTarget.preset(name))


# ----------------------------------------------------------------------------- OpenVINO
@pytest.fixture(scope="module")
def openvino():
    return pytest.importorskip("openvino")


def test_openvino_latency_is_positive_and_its_fingerprint_its_own(openvino):
    net = ToySupernet()
    cfg = net.max_config()
    target = HardwareTarget.preset("cpu-ov-b1", **FAST)
    res = measure_latency(net.extract(cfg), net.example_input(cfg), target)
    assert res.median_ms > 0 and math.isfinite(res.median_ms) and 3 <= res.n_runs <= FAST["max_repeats"]
    fp = target.fingerprint()
    assert fp["backend"] == "openvino" and fp["openvino"] == openvino.__version__
    assert fp["openvino_config"] == {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 1,
                                     "INFERENCE_PRECISION_HINT": "f32"}
    hashes = {HardwareTarget.preset(n).fingerprint_hash() for n in ("cpu-ov-b1", "cpu-ort-b1", "cpu-torch-b1", "cpu-ov-b1-t2")}
    assert len(hashes) == 4
    assert HardwareTarget.preset("cpu-ov-b1", precision="bf16").fingerprint_hash() != target.fingerprint_hash()


@pytest.mark.parametrize("seed", [0, 1])
def test_openvino_outputs_equal_onnxruntime_and_pytorch(openvino, seed):
    from sliver.measure.timing import openvino_model

    net = ToySupernet(seed)
    cfg = net.space.sample(seed)
    model = net.extract(cfg)
    x = net.example_input(cfg, batch_size=4, seed=seed)
    onnx = export_onnx(model, x)
    compiled = openvino_model(onnx, HardwareTarget.preset("cpu-ov-b4"))
    # the compiled options are the pinned ones, not OpenVINO's defaults for this CPU
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY" and int(compiled.get_property("NUM_STREAMS")) == 1
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
    got = compiled.create_infer_request().infer({0: x.numpy()})[compiled.output(0)]
    np.testing.assert_allclose(got, ort_session(onnx).run(None, {"input": x.numpy()})[0], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-4)


def test_model_evaluator_measures_on_openvino(openvino):
    net = ToySupernet()
    ev = ModelEvaluator(net, HardwareTarget.preset("cpu-ov-b1", **FAST), objectives=["latency_ms", "params"])
    assert ev.fingerprint == HardwareTarget.preset("cpu-ov-b1").fingerprint_hash()
    out = ev.measure({"w": 4, "r": 8}, ["latency_ms", "params"])
    assert out.values["latency_ms"] > 0 and out.stats["latency_ms"]["backend"] == "openvino"


def test_cli_measure_on_openvino(openvino, digits_checkpoint, tmp_path):
    path, config = digits_checkpoint
    target = tmp_path / "ov.yaml"  # a short protocol: this checks the plumbing, not the figure
    target.write_text("name: cpu-ov-b1\nbackend: openvino\nwarmup: 1\nwarmup_s: 0\nmin_repeats: 3\nmax_repeats: 5\n")
    res = CliRunner().invoke(app, ["measure", "-c", str(path), "-t", str(target), "--config", json.dumps(config),
                                   "-o", "latency_ms", "--db", f"sqlite:///{tmp_path / 'ov.db'}", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output.strip().splitlines()[-1])
    assert row["values"]["latency_ms"] > 0 and not row["errors"]


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    from sliver.elastic.mobilenet import ElasticMobileNet
    from sliver.train.checkpoint import save_checkpoint

    net = ElasticMobileNet.from_preset("digits")
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    save_checkpoint(path, {"model": net.state_dict(), "supernet": net.supernet_config(),
                           "data": {"name_or_path": "digits", "seed": 0}})
    return path, net.space.sample(0)


@pytest.mark.slow
def test_an_operator_table_builds_on_openvino_and_stays_its_own(openvino, tmp_path):
    from sliver.elastic.mobilenet import ElasticMobileNet
    from sliver.predict.lut import OperatorLUT, build_lut, enumerate_operators

    net = ElasticMobileNet.from_preset("tiny")
    ov = HardwareTarget.preset("cpu-ov-b1", **FAST)
    lut = build_lut(net, ov, tmp_path / "ov.yaml", copies=2)
    assert set(lut.entries) == set(enumerate_operators(net))
    assert all(math.isfinite(v) and v > 0 for v in lut.entries.values())
    arch = net.arch_config(net.space.sample(0))
    assert lut.predict(arch) > 0
    assert OperatorLUT.load(tmp_path / "ov.yaml", ov).fingerprint_hash == ov.fingerprint_hash()
    # a table timed on OpenVINO never stands in for ONNX Runtime's (and the other way round)
    with pytest.raises(UserError, match="build a table on this target"):
        OperatorLUT.load(tmp_path / "ov.yaml", HardwareTarget.preset("cpu-ort-b1", **FAST))


def test_list_targets_says_what_this_machine_runs():
    res = CliRunner().invoke(app, ["measure", "--list-targets"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    lines = {line.split()[1]: line for line in res.output.splitlines() if line.startswith("│")}
    assert set(PRESET_EXAMPLES) <= set(lines)
    for name in PRESET_EXAMPLES:
        reason = HardwareTarget.preset(name).unavailable_reason()
        assert ("yes" in lines[name]) == (reason is None)
    assert "yes" in lines["cpu-ort-b1"] and "yes" in lines["cpu-torch-b1"]
    if not torch.cuda.is_available():
        assert "no CUDA device is available" in lines["cuda-torch-b8"]


@no_cuda
def test_cli_measure_on_cuda_without_a_gpu_is_one_line(digits_checkpoint, tmp_path):
    path, config = digits_checkpoint
    res = CliRunner().invoke(app, ["measure", "-c", str(path), "-t", "cuda-torch-b8", "--config", json.dumps(config),
                                   "-o", "latency_ms", "--db", f"sqlite:///{tmp_path / 'c.db'}"], env={"COLUMNS": "250"})
    assert res.exit_code == 2
    assert res.output.strip() == ("error: hardware target 'cuda-torch-b8': no CUDA device is available "
                                  "(torch.cuda.is_available() is False); use a cpu-* target")


# ----------------------------------------------------------------------------- CUDA (skipped without a GPU)
@needs_cuda
@pytest.mark.parametrize("name", ["cuda-torch-b8", "cuda-ort-b1"])
def test_cuda_latency_is_positive_and_leaves_the_model_on_the_cpu(name):
    target = HardwareTarget.preset(name, **FAST)
    if target.unavailable_reason():
        pytest.skip(target.unavailable_reason())
    net = ToySupernet()
    cfg = net.max_config()
    model = net.extract(cfg)
    res = measure_latency(model, net.example_input(cfg, batch_size=target.batch_size), target)
    assert res.median_ms > 0 and math.isfinite(res.median_ms)
    assert next(model.parameters()).device.type == "cpu"
    fp = target.fingerprint()
    assert fp["device"] == "cuda" and fp["gpu"] == torch.cuda.get_device_name()


@needs_cuda
def test_cuda_timer_times_the_gpu_work():
    from sliver.measure.latency import cuda_ns

    a = torch.randn(2048, 2048, device="cuda")
    res = time_runs(lambda: a @ a, warmup=2, min_repeats=5, max_repeats=10, timer=cuda_ns)
    # launching the product returns at once; only a synchronised timer sees the GPU's milliseconds
    assert res.median_ms > 0.01
