"""Quantisation policy search: the space, real ONNX Runtime quantised models, the evaluator and export."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from sliver.data import load_dataset
from sliver.elastic.mobilenet import ElasticMobileNet
from sliver.measure.evaluator import evaluate
from sliver.measure.timing import ort_session
from sliver.quant import (
    QuantError,
    QuantEvaluator,
    export_quantized,
    fp32_nodes,
    node_genes,
    onnx_node_names,
    quantization_space,
    split_config,
)
from sliver.store import ResultStore


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return ElasticMobileNet.from_preset("tiny")


@pytest.fixture(scope="module")
def evaluator(supernet, data, tmp_path_factory):
    return QuantEvaluator(supernet, data, calib_samples=64, accuracy_subset=0.5, workdir=tmp_path_factory.mktemp("quant"))


def _policy(space, config, precision, weights="per_channel", act="asymmetric"):
    """``config`` with every precision gene set to ``precision``."""
    out = dict(config, q_stem=precision, q_head=precision, q_classifier=precision, q_weights=weights, q_act=act)
    out["q"] = [precision] * space["q"].length
    return space.validate(out)


def _run(path, x):
    session = ort_session(open(path, "rb").read())
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_space_keeps_architecture_and_gates_block_genes(supernet):
    space = quantization_space(supernet)
    assert space.names[:len(supernet.space.names)] == supernet.space.names
    config = space.validate(dict(space.max_config(), d=[1, 2, 3]))
    arch, policy = split_config(supernet, config)
    assert supernet.space.validate(arch) == arch and set(policy) == {"q_stem", "q", "q_head", "q_classifier", "q_weights", "q_act"}
    mask = space.active_mask(config)["q"]
    assert mask == [True, False, False, True, True, False, True, True, True]
    with pytest.raises(QuantError, match="precisions"):
        quantization_space(supernet, precisions=("int4",))


def test_inactive_block_genes_do_not_change_the_canonical_key(supernet):
    space = quantization_space(supernet)
    base = _policy(space, dict(space.min_config(), d=[1, 1, 2]), "int8")
    flipped_inactive = dict(base, q=list(base["q"]))
    for j in (1, 2, 4, 5, 8):  # blocks beyond the depths 1, 1, 2
        flipped_inactive["q"][j] = "fp32"
    assert space.key(flipped_inactive) == space.key(base)
    flipped_active = dict(base, q=list(base["q"]))
    flipped_active["q"][6] = "fp32"
    assert space.key(flipped_active) != space.key(base)


def test_node_genes_follow_the_active_blocks(evaluator, supernet):
    config = _policy(evaluator.space, dict(evaluator.space.max_config(), d=[2, 1, 3], r=20), "int8")
    names = onnx_node_names(evaluator.float_model(split_config(supernet, config)[0]))
    genes = node_genes(supernet, config, names)
    block_genes = {g for g in genes.values() if g.startswith("q[")}
    assert block_genes == {"q[0]", "q[1]", "q[3]", "q[6]", "q[7]", "q[8]"}
    assert {genes[n] for n in names if n.startswith("/stem/")} == {"q_stem"}
    assert genes["/classifier/Gemm"] == "q_classifier"


def test_all_fp32_policy_gives_the_float_onnx_outputs(evaluator, supernet, data, tmp_path):
    space = evaluator.space
    config = _policy(space, space.max_config(), "fp32")
    arch = split_config(supernet, config)[0]
    float_path = evaluator.float_model(arch)
    quant_path = evaluator.quantized_model(config, tmp_path / "fp32.onnx")
    x = evaluator.calibration_batches(arch)[0]
    np.testing.assert_allclose(_run(quant_path, x), _run(float_path, x), rtol=0, atol=1e-6)
    # and the float ONNX model is the extracted sub-network
    with torch.inference_mode():
        reference = supernet.extract(arch)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(float_path, x), reference, atol=1e-4)
    ops = {n.op_type for n in onnx.load(str(quant_path)).graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}


@pytest.mark.slow
def test_int8_model_is_at_least_2_5x_smaller_on_disk(data, tmp_path):
    torch.manual_seed(0)
    wide = ElasticMobileNet.from_preset("tiny", width_mult=2.0)  # weights dominate the file
    ev = QuantEvaluator(wide, data, calib_samples=32, objectives=["model_size"], workdir=tmp_path)
    config = ev.space.max_config()
    sizes = {p: ev.measure(_policy(ev.space, config, p), ["model_size"]).values["model_size"] for p in ("fp32", "int8")}
    assert sizes["fp32"] / sizes["int8"] >= 2.5, sizes


def test_excluded_nodes_stay_float(evaluator, supernet, tmp_path):
    space = evaluator.space
    config = _policy(space, space.max_config(), "int8")
    config["q"] = ["fp32" if j in (1, 4) else "int8" for j in range(space["q"].length)]
    config["q_head"] = "fp32"
    path = evaluator.quantized_model(config, tmp_path / "mixed.onnx")
    graph = onnx.load(str(path)).graph
    float_names = onnx_node_names(evaluator.float_model(split_config(supernet, config)[0]))
    excluded = set(fp32_nodes(supernet, config, float_names))
    genes = node_genes(supernet, config, float_names)
    assert {genes[n] for n in excluded} == {"q[1]", "q[4]", "q_head"}
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    assert excluded <= set(nodes)
    for name in excluded:
        node = nodes[name]
        if node.op_type in ("Conv", "Gemm"):  # the weights are float initialisers, not dequantised int8
            assert inits[node.input[1]].data_type == onnx.TensorProto.FLOAT, name
        for tensor in node.input:
            dq = producer.get(tensor)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            # a DQ may only sit on a tensor coming from a quantised gene (the boundary), never between float nodes
            q = producer.get(dq.input[0])
            source = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            assert source is not None and source.name not in excluded, (name, tensor)
        for tensor in node.output:
            consumers = [n for n in graph.node if tensor in n.input]
            if any(c.op_type == "QuantizeLinear" for c in consumers):
                assert not any(c.name in excluded for c in consumers if c.op_type != "QuantizeLinear"), (name, tensor)
    # quantised genes really are int8: their convolutions read dequantised int8 weights
    quantised = [n for n in graph.node if n.op_type == "Conv" and n.name not in excluded]
    assert quantised and all(producer[n.input[1]].op_type == "DequantizeLinear" for n in quantised)


def test_too_small_calibration_split_is_a_clear_error(supernet, data):
    with pytest.raises(QuantError, match=r"calibration split has \d+ images, fewer than calib_samples=100000"):
        QuantEvaluator(supernet, data, calib_samples=100_000)


def test_wrong_target_and_objective_are_clear_errors(supernet, data):
    with pytest.raises(QuantError, match="cpu-ort"):
        QuantEvaluator(supernet, data, target="cpu-torch-b1")
    with pytest.raises(QuantError, match="peak_memory"):
        QuantEvaluator(supernet, data, objectives=["peak_memory"])


def test_evaluate_stores_policies_apart_and_calibrates_once_per_architecture(evaluator, tmp_path):
    space = evaluator.space
    store = ResultStore(f"sqlite:///{tmp_path / 'q.db'}")
    arch = dict(space.min_config(), d=[2, 2, 2], r=24)
    int8 = _policy(space, arch, "int8")
    mixed = dict(int8, q_classifier="fp32", q_act="symmetric", q_weights="per_tensor")
    calibrations = evaluator.runs["calibrations"]
    a = evaluate(evaluator, int8, store)
    b = evaluate(evaluator, mixed, store)
    assert a.ok and b.ok, (a.errors, b.errors)
    assert a.key != b.key and evaluator.runs["calibrations"] == calibrations + 1
    assert a.values["macs"] == b.values["macs"] and a.values["model_size"] != b.values["model_size"]
    again = evaluate(evaluator, int8, store)
    assert again.cached and again.values == a.values


def test_dynamic_policy_uses_integer_kernels(evaluator, tmp_path):
    space = evaluator.space
    config = _policy(space, dict(space.min_config(), r=20), "int8", act="dynamic")
    ops = {n.op_type for n in onnx.load(str(evaluator.quantized_model(config, tmp_path / "dyn.onnx"))).graph.node}
    assert {"ConvInteger", "DynamicQuantizeLinear"} <= ops


def test_export_verifies_accuracy_against_the_store(evaluator, supernet, data, tmp_path):
    space = evaluator.space
    config = _policy(space, dict(space.min_config(), d=[1, 2, 1], r=28), "int8")
    config["q"][0] = "fp32"
    stored = evaluator.measure(config, ["accuracy"]).values
    fresh = QuantEvaluator(supernet, data, calib_samples=64, accuracy_subset=0.5, workdir=tmp_path / "fresh")
    card = export_quantized(fresh, config, tmp_path / "out" / "model.onnx", stored=stored)
    assert card["accuracy"] == stored["accuracy"] and (tmp_path / "out" / "model.onnx.json").is_file()
    assert card["fp32_nodes"] and all(n.startswith("/blocks/blocks.1/") for n in card["fp32_nodes"])
    # the deployed file takes any batch size, and a row's result does not depend on the batch it came in
    x = supernet.example_input(split_config(supernet, config)[0], batch_size=16, seed=1).numpy()
    batch16 = _run(tmp_path / "out" / "model.onnx", x)
    assert batch16.shape == (16, 10)
    np.testing.assert_allclose(_run(tmp_path / "out" / "model.onnx", x[:1]), batch16[:1], atol=1e-5)
    with pytest.raises(QuantError, match="differs from the stored"):
        export_quantized(fresh, config, tmp_path / "bad.onnx", stored={"accuracy": stored["accuracy"] + 1.0})
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "nsga2"])
def test_joint_search_runs_through_the_search_loop(supernet, data, tmp_path, strategy):
    from sliver.config import ConfigError, validate
    from sliver.quant import QuantizationSection, joint_search

    section = validate(QuantizationSection, {"search": True, "calib_samples": 32, "accuracy_subset": 0.3, "act_modes": ["asymmetric"]})
    ev = section.evaluator(supernet, data, workdir=tmp_path / "work")
    store = ResultStore(f"sqlite:///{tmp_path / 's.db'}")
    options = {"pop_size": 4} if strategy == "nsga2" else {}
    result = joint_search(ev, strategy=strategy, budget=5, store=store, study_name="joint", strategy_options=options, seed=1)
    assert result.n_evaluations == 5 and result.n_failed == 0
    # five distinct networks (architecture + policy) measured, each with the one allowed activation mode
    assert len({ev.space.key(p.config) for p in result.points}) == 5
    assert all(p.config["q_act"] == "asymmetric" for p in result.points)
    assert all({"accuracy", "latency_ms", "model_size"} <= set(p.values) for p in result.points)
    assert len(store.trials(store.get_study("joint").id)) == 5
    with pytest.raises(ConfigError, match="precisions"):
        validate(QuantizationSection, {"precisions": ["int4"]})


def test_example_yaml_builds_a_joint_search_from_a_checkpoint(supernet, tmp_path):
    from pathlib import Path

    from sliver.config import read_yaml, validate
    from sliver.quant import QuantEvaluator
    from sliver.search.config import SearchConfig, build_search
    from sliver.train.checkpoint import save_checkpoint

    cfg = read_yaml(Path(__file__).resolve().parent.parent / "examples" / "search_quant.yaml")
    section = validate(SearchConfig, cfg).problem.quantization
    assert section.search and "dynamic" not in section.space(supernet)["q_act"].choices
    path = tmp_path / "ckpt.pt"
    digest = save_checkpoint(path, {"model": supernet.state_dict(), "supernet": supernet.supernet_config(),
                                    "data": {"name_or_path": "digits", "seed": 0}})
    cfg["problem"].update(checkpoint=str(path))
    cfg["problem"]["quantization"]["calib_samples"] = 32
    cfg["store"] = None
    search, _ = build_search(validate(SearchConfig, cfg))
    ev = search.evaluator
    assert isinstance(ev, QuantEvaluator)
    assert ev.supernet_hash.startswith(digest) and ev.space == section.space(supernet) and search.space == ev.space
