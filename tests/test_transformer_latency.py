"""Text configs through the existing measurement path: latency on torch and ONNX Runtime, dynamic-length export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sliver.elastic.bert import ElasticBert
from sliver.measure.hardware import HardwareTarget
from sliver.measure.latency import export_onnx
from sliver.measure.model import ModelEvaluator
from sliver.measure.timing import ort_session

pytest.importorskip("onnxruntime")
FAST = dict(warmup=1, warmup_s=0.0, min_repeats=3, max_repeats=6, max_seconds=1.0)


def tiny_bert() -> ElasticBert:
    model = ElasticBert(vocab_size=50, max_positions=40, hidden=24, num_layers=3, num_heads=4, ffn=32, num_classes=3,
                        seq_len=12, head_choices=[1, 2, 4], ffn_choices=[8, 16, 32], dropout=0.0, seed=3)
    with torch.no_grad():  # random LayerNorm gains too, so every sliced tensor matters
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


@pytest.mark.parametrize("target", ["cpu-torch-b1", "cpu-ort-b1", "cpu-ort-b2"])
def test_evaluator_measures_text_latency_and_costs(target):
    model = tiny_bert()
    evaluator = ModelEvaluator(model, HardwareTarget.preset(target, **FAST), objectives=["latency_ms", "macs", "params"])
    small, large = model.min_config(), model.max_config()
    got = {name: evaluator.measure(c, ["latency_ms", "macs", "params"]) for name, c in (("small", small), ("large", large))}
    for result in got.values():
        assert not result.errors, result
        assert result.values["latency_ms"] > 0 and math.isfinite(result.values["latency_ms"])
        assert result.stats["latency_ms"]["backend"] == HardwareTarget.preset(target).backend
    small_v, large_v = got["small"].values, got["large"].values
    assert small_v["macs"] < large_v["macs"] and small_v["params"] < large_v["params"]


def test_onnx_export_with_dynamic_axes_runs_any_batch_and_length():
    model = tiny_bert()
    config = model.space.sample(2)
    plain = model.extract(config)
    onnx = export_onnx(plain, model.example_input(config), dynamic_axes=ElasticBert.onnx_dynamic_axes)
    session = ort_session(onnx)
    for batch, length in ((1, 12), (3, 5), (2, 30)):
        ids = torch.randint(1, 50, (batch, length), generator=torch.Generator().manual_seed(length))
        ids[-1, length // 2:] = 0  # a padded text
        (got,) = session.run(None, {"input": ids.numpy()})
        np.testing.assert_allclose(got, plain(ids).detach().numpy(), atol=1e-4, rtol=1e-4)
    # without dynamic axes the shape stays fixed, as for image models
    with pytest.raises(Exception, match="Got: 2 Expected: 1"):  # onnxruntime's own exception class
        ort_session(export_onnx(plain, model.example_input(config))).run(None, {"input": ids.numpy()})


def test_exported_text_model_takes_other_lengths(tmp_path):
    from sliver.export import export_subnetwork

    model = tiny_bert()
    evaluator = ModelEvaluator(model, HardwareTarget.preset("cpu-ort-b1", **FAST), objectives=["macs"])
    config = model.space.sample(4)
    result = export_subnetwork(evaluator, config, tmp_path / "pick")
    assert result.checks["onnx_max_abs_diff"] < 1e-4
    assert result.checks["onnx_batch_checked"] > 1
    session = ort_session((tmp_path / "pick" / "model.onnx").read_bytes())
    plain = model.extract(config)
    for batch in (1, 16):
        for length in (7, 12):
            ids = torch.randint(1, 50, (batch, length), generator=torch.Generator().manual_seed(batch + length))
            ids[-1, length // 2:] = 0  # a padded text
            (got,) = session.run(None, {session.get_inputs()[0].name: ids.numpy()})
            np.testing.assert_allclose(got, plain(ids).detach().numpy(), atol=1e-4, rtol=1e-4)
