"""ElasticTransformer: exact extraction, importance reordering, costs and ONNX export (ViT and BERT families)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sliver.elastic import build_extracted, build_supernet
from sliver.elastic.bert import ElasticBert
from sliver.elastic.vit import ElasticViT


def tiny_vit(**kw) -> ElasticViT:
    args = dict(image_size=8, patch_size=4, hidden=32, num_layers=3, num_heads=4, ffn=48,
                head_choices=[1, 2, 4], ffn_choices=[8, 24, 48], hidden_choices=[16, 24, 32])
    return ElasticViT(**{**args, **kw}).eval()


def tiny_bert(**kw) -> ElasticBert:
    args = dict(vocab_size=50, max_positions=40, hidden=24, num_layers=3, num_heads=4, ffn=32, num_classes=3,
                seq_len=12, head_choices=[1, 2, 4], ffn_choices=[8, 16, 32], hidden_choices=[16, 24], dropout=0.0)
    return ElasticBert(**{**args, **kw}).eval()


def padded_ids(batch=3, length=12, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (batch, length), generator=gen)
    for row, length_kept in ((1, 7), (2, 3)):  # shorter texts: padding must not change their outputs
        if row < batch:
            ids[row, length_kept:] = 0
    return ids


def perturb(model: nn.Module, seed: int = 0) -> None:
    """Random weights everywhere (also LayerNorm gains/biases), so every sliced tensor matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_gain = name.endswith("weight") and ("ln" in name or "norm" in name)
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if is_gain else 0.0))


@pytest.mark.parametrize("family", ["vit", "bert"])
@pytest.mark.parametrize("keep", ["first", "spread"])
def test_extract_equals_supernet_for_random_configs(family, keep):
    model = tiny_vit(keep=keep) if family == "vit" else tiny_bert(keep=keep)
    perturb(model)
    x = torch.randn(2, 1, 8, 8) if family == "vit" else padded_ids()
    configs = [model.max_config(), model.min_config()] + model.space.sample(np.random.default_rng(3), n=6)
    for config in configs:
        model.activate(config)
        expected = model(x)
        plain = model.extract(config)
        assert not any(type(m).__module__.startswith("sliver.elastic.transformer") and "Elastic" in type(m).__name__
                       for m in plain.modules())
        torch.testing.assert_close(plain(x), expected, atol=1e-5, rtol=1e-5)
        # rebuilt from its JSON arch alone, with the extracted weights
        rebuilt = build_extracted(model.arch_config(config))
        rebuilt.load_state_dict(plain.state_dict())
        torch.testing.assert_close(rebuilt.eval()(x), expected, atol=1e-5, rtol=1e-5)


def test_subnetworks_differ_and_depth_gate_canonicalises():
    model = tiny_vit()
    perturb(model)
    x = torch.randn(2, 1, 8, 8)
    full, small = model.max_config(), model.min_config()
    model.activate(full)
    a = model(x)
    model.activate(small)
    assert not torch.allclose(model(x), a)
    # genes of layers beyond the depth are inactive: same network, same key, same output
    c1 = {"layers": 1, "heads": [2, 1, 1], "ffn": [24, 8, 8], "hidden": 16}
    c2 = {"layers": 1, "heads": [2, 4, 2], "ffn": [24, 48, 24], "hidden": 16}
    assert model.space.key(c1) == model.space.key(c2)
    model.activate(c1)
    y1 = model(x)
    model.activate(c2)
    torch.testing.assert_close(model(x), y1)


def test_spread_keeps_layers_over_the_whole_depth():
    model = tiny_vit(num_layers=6, keep="spread")
    assert model.kept_layers(6) == list(range(6))
    assert model.kept_layers(3) == [1, 3, 5]
    assert model.kept_layers(1) == [5]
    assert tiny_vit(num_layers=6).kept_layers(3) == [0, 1, 2]


def test_padding_does_not_change_a_text_output():
    model = tiny_bert()
    perturb(model)
    ids = padded_ids()
    model.activate(model.space.sample(1))
    out = model(ids)
    short = model(ids[2:3, :3])  # the same text without its padding
    torch.testing.assert_close(out[2:3], short, atol=1e-5, rtol=1e-5)
    trimmed = model.prepare_input(ids[1:], model.active_config)
    assert trimmed.shape[1] == 7


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_magnitude_reordering_keeps_full_outputs_and_sorts_units(family):
    model = tiny_vit() if family == "vit" else tiny_bert()
    perturb(model, seed=1)
    x = torch.randn(2, 1, 8, 8) if family == "vit" else padded_ids()
    model.activate(model.max_config())
    before = model(x)
    orders = model.reorder("magnitude")
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
    assert any(o != sorted(o) for o in orders["heads"]) and any(o != sorted(o) for o in orders["ffn"])
    for layer in model.layers:
        heads, neurons = layer.unit_scores(torch.abs)
        assert torch.all(heads[:-1] >= heads[1:]) and torch.all(neurons[:-1] >= neurons[1:])
    # a sub-network now keeps the most important units: sorting again changes nothing
    again = model.reorder("magnitude")
    assert all(o == sorted(o) for o in again["heads"] + again["ffn"])


def test_gradient_reordering_keeps_full_outputs():
    model = tiny_bert()
    perturb(model, seed=2)
    ids = padded_ids()
    labels = torch.tensor([0, 1, 2])
    model.activate(model.min_config())
    model.activate(model.max_config())
    before = model(ids)
    model.activate(model.min_config())
    orders = model.reorder("gradient", batches=[(ids, labels), (padded_ids(seed=1), labels)])
    assert model.active_config == model.min_config()  # the caller's sub-network is restored
    assert all(p.grad is None for p in model.parameters())
    model.activate(model.max_config())
    torch.testing.assert_close(model(ids), before, atol=1e-5, rtol=1e-5)
    assert len(orders["heads"]) == 3 and sorted(orders["heads"][0]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="needs batches"):
        model.reorder("gradient")
    with pytest.raises(ValueError, match="'magnitude' or 'gradient'"):
        model.reorder("random")


def _counted_macs(model: nn.Module, x: torch.Tensor, hidden_seq: int, arch: dict) -> int:
    """MACs by forward hooks on the extracted model's Linear/Conv layers, plus the attention products."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.Conv2d):
            total += output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    model(x)
    for h in handles:
        h.remove()
    # encoder blocks call F.linear on their nn.Linear weights (no hooks): count them from the arch
    for heads, ffn in zip(arch["heads"], arch["ffn"]):
        inner = heads * arch["head_dim"]
        total += hidden_seq * (4 * arch["hidden"] * inner + 2 * arch["hidden"] * ffn) + 2 * hidden_seq ** 2 * inner
    return total


def test_costs_match_the_extracted_model():
    vit, bert = tiny_vit(), tiny_bert()
    for model, x, seq in ((vit, torch.randn(1, 1, 8, 8), 5), (bert, torch.randint(1, 50, (1, 12)), 12)):
        for config in [model.max_config()] + model.space.sample(np.random.default_rng(0), n=4):
            costs = model.costs(config)
            plain = model.extract(config)
            assert costs["params"] == sum(p.numel() for p in plain.parameters())
            assert costs["macs"] == _counted_macs(plain, x, seq, model.arch_config(config))
    # attention grows quadratically with the sequence: MACs at 2S exceed twice those at S
    c = bert.max_config()
    assert bert.costs(c, seq_len=24)["macs"] > 2 * bert.costs(c, seq_len=12)["macs"]
    assert bert.costs(bert.min_config())["macs"] < bert.costs(c)["macs"]


def test_supernet_config_rebuilds_the_same_space_and_weights():
    for model in (tiny_vit(seed=4), tiny_bert(seed=4)):
        again = build_supernet(model.supernet_config())
        assert again.space == model.space
        for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
            assert torch.equal(a, b), n


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="head_choices"):
        tiny_vit(head_choices=[1, 8])
    with pytest.raises(ValueError, match="ffn_choices .* include 48"):
        tiny_vit(ffn_choices=[8, 24])
    with pytest.raises(ValueError, match="keep"):
        tiny_vit(keep="last")
    with pytest.raises(ValueError, match="patch_size"):
        tiny_vit(patch_size=3)
    with pytest.raises(ValueError, match="seq_len"):
        tiny_bert(seq_len=100)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # dynamo=False is the TorchScript exporter, on purpose
def test_onnx_export_of_extracted_bert_has_dynamic_sequence_length(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = tiny_bert()
    perturb(model)
    config = model.space.sample(5)
    plain = model.extract(config)
    path = tmp_path / "bert.onnx"
    torch.onnx.export(plain, (padded_ids(),), str(path), dynamo=False, input_names=["input_ids"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}, opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, length in ((3, 12), (2, 5), (1, 30)):
        ids = padded_ids(batch=batch, length=length, seed=length)
        (got,) = session.run(None, {"input_ids": ids.numpy()})
        np.testing.assert_allclose(got, plain(ids).detach().numpy(), atol=1e-4, rtol=1e-4)
