"""The ``supernet:`` section of a YAML config, validated with pydantic, and building from it.

Example (``examples/mobilenet_tiny.yaml``)::

    supernet:
      family: mobilenet
      preset: tiny          # imagenet | tiny | digits
      kernel_transform: true   # any constructor argument overrides the preset

A family can register its own pydantic model with :func:`register_spec`; a
family without one is built by :func:`sliver.elastic.build_supernet` directly.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import Field, PositiveInt

from sliver.config import ConfigError, StrictModel, validate
from sliver.elastic.base import Supernet, build_supernet, families
from sliver.elastic.mobilenet import PRESETS, ElasticMobileNet

_SPECS: dict[str, type[StrictModel]] = {}


def register_spec(family: str) -> Callable[[type[StrictModel]], type[StrictModel]]:
    """Register the pydantic model of a family's ``supernet:`` section; it must define ``build()``."""

    def deco(model: type[StrictModel]) -> type[StrictModel]:
        _SPECS[family] = model
        return model

    return deco


class StageSpec(StrictModel):
    """One stage of inverted-residual blocks."""

    width: PositiveInt
    blocks: PositiveInt
    stride: Literal[1, 2]
    act: Literal["relu", "h_swish"]
    se: bool


@register_spec("mobilenet")
class MobileNetSpec(StrictModel):
    """``supernet:`` section for :class:`ElasticMobileNet`: a preset and/or constructor arguments."""

    family: Literal["mobilenet"]
    preset: Literal[tuple(sorted(PRESETS))] | None = None  # type: ignore[valid-type]
    stages: list[StageSpec] | None = Field(None, min_length=1)
    in_channels: PositiveInt | None = None
    num_classes: PositiveInt | None = None
    width_mult: float | None = Field(None, gt=0)
    stem_width: PositiveInt | None = None
    stem_stride: Literal[1, 2] | None = None
    first_block_width: PositiveInt | None = None
    final_expand_width: PositiveInt | None = None
    feature_width: PositiveInt | None = None
    kernel_sizes: list[PositiveInt] | None = Field(None, min_length=1)
    expand_ratios: list[float] | None = Field(None, min_length=1)
    depths: list[PositiveInt] | None = Field(None, min_length=1)
    resolutions: list[PositiveInt] | None = Field(None, min_length=1)
    dropout: float | None = Field(None, ge=0, lt=1)
    kernel_transform: bool | None = None

    def build(self) -> ElasticMobileNet:
        args = self.model_dump(exclude_none=True, exclude={"family", "preset"})
        if self.preset is not None:
            return ElasticMobileNet.from_preset(self.preset, **args)
        if self.stages is None:
            raise ConfigError(f"field 'stages': required when no 'preset' is given (presets: {sorted(PRESETS)})")
        return ElasticMobileNet(**args)


def from_spec(spec: dict[str, Any], source: str = "supernet") -> Supernet:
    """Build a super-network from a YAML ``supernet:`` section; a wrong field raises a one-line ConfigError."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: must be a mapping with 'family' and its arguments")
    family = spec.get("family")
    if not isinstance(family, str) or family not in families():
        raise ConfigError(f"{source}: field 'family': must be one of {families()}, got {family!r}")
    if family in _SPECS:
        model = validate(_SPECS[family], spec, source)
        try:
            return model.build()
        except (ValueError, TypeError) as exc:  # cross-field checks of the constructor
            raise ConfigError(f"{source}: {exc}") from None
    try:
        return build_supernet(spec)
    except TypeError as exc:  # an unknown or missing constructor argument
        raise ConfigError(f"{source}: {exc}") from None


@register_spec("llama")
class LlamaSpec(StrictModel):
    """``supernet:`` section for :class:`~sliver.elastic.llama.ElasticLlama`: pre-trained weights from a GGUF
    file (``gguf: smollm2`` for the bundled SmolLM2-135M-Instruct, or a path), or a random model of the given
    size; plus the elastic choices (see :class:`ElasticLlama`)."""

    family: Literal["llama"]
    gguf: str | None = None
    vocab_size: PositiveInt | None = None
    hidden: PositiveInt | None = None
    num_layers: PositiveInt | None = None
    num_heads: PositiveInt | None = None
    num_kv_heads: PositiveInt | None = None
    ffn: PositiveInt | None = None
    tie_embeddings: bool | None = None
    seq_len: PositiveInt = 256
    head_choices: list[PositiveInt] | None = None
    ffn_choices: list[PositiveInt] | None = None
    depth_choices: list[PositiveInt] | None = None

    def build(self) -> Supernet:
        from sliver.elastic.llama import ElasticLlama

        choices = {"head_choices": self.head_choices, "ffn_choices": self.ffn_choices,
                   "depth_choices": self.depth_choices}
        size = self.model_dump(exclude_none=True, exclude={"family", "gguf", "seq_len", *choices})
        if self.gguf is not None:
            if size:
                raise ConfigError(f"fields {sorted(size)}: a GGUF file gives the model's size; remove them")
            from sliver.elastic.gguf import read_gguf, smollm2_path

            path = smollm2_path() if self.gguf == "smollm2" else self.gguf
            return read_gguf(path, seq_len=self.seq_len, **choices)[0]
        missing = sorted({"vocab_size", "hidden", "num_layers", "num_heads", "num_kv_heads", "ffn"} - set(size))
        if missing:
            raise ConfigError(f"fields {missing}: required for a random model; or give 'gguf: smollm2' (or a path)")
        return ElasticLlama(**size, seq_len=self.seq_len, **choices)
