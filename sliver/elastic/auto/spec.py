"""The ``supernet: {family: auto, ...}`` section of a YAML config: the user's own model, made elastic."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt

from sliver.config import ConfigError, StrictModel
from sliver.elastic.auto.graph import ElastifyError
from sliver.elastic.auto.supernet import DEFAULT_WIDTHS, AutoSupernet
from sliver.elastic.spec import register_spec


@register_spec("auto")
class AutoSpec(StrictModel):
    """``supernet:`` section of the ``auto`` family (see :class:`AutoSupernet` for each field)."""

    family: Literal["auto"]
    module: str = Field(..., description="'package.module:factory' or 'path/to/file.py:factory'")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = None
    input_shape: list[PositiveInt] = Field(..., min_length=1)
    num_classes: PositiveInt | None = None
    width_choices: list[float] = Field(default_factory=lambda: list(DEFAULT_WIDTHS), min_length=1)
    depth: bool = True
    kernel: bool = False
    fixed: list[str] = Field(default_factory=list)
    leaf: list[str] = Field(default_factory=list)
    channel_divisor: PositiveInt = 8
    importance: Literal["magnitude"] | None = "magnitude"
    teacher: bool = True

    def build(self) -> AutoSupernet:
        try:
            return AutoSupernet(**self.model_dump(exclude={"family"}))
        except ElastifyError as exc:
            raise ConfigError(str(exc)) from None
