"""Loading YAML configs into pydantic models, with one-line errors that name the field.

Each part of sliver defines the pydantic model of its own section next to its
code (e.g. the super-network spec below, training in ``sliver.train``); this
module only holds the shared loading and error formatting.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sliver.errors import UserError

M = TypeVar("M", bound=BaseModel)


class ConfigError(UserError):
    """A YAML config is missing, malformed or has a wrong field; the message is one line."""


class StrictModel(BaseModel):
    """Base for config sections: unknown fields are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, raising :class:`ConfigError` for a missing file or bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of field: value")
    return data


def validate(model: type[M], data: dict[str, Any], source: str = "config") -> M:
    """Validate ``data`` against ``model``; a failure becomes a one-line :class:`ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def load(model: type[M], path: str | Path) -> M:
    """Read and validate a YAML file in one step."""
    return validate(model, read_yaml(path), str(path))


def format_validation_error(exc: ValidationError) -> str:
    """The first pydantic error as 'field.path: message' (plus a count of the others).

    An unknown field is reported before the others: a typo'd required field
    (``budegt:``) is both unknown and missing, and the typo is what to fix.
    """
    errors = exc.errors()
    for first in errors:
        if first["type"] == "extra_forbidden" and (intended := _misspelt(first, errors)):
            msg = f"unknown field; did you mean '{intended}'?"
            break
    else:
        first = errors[0]
        msg = {"extra_forbidden": "unknown field (check its spelling)",
               "missing": "required field is missing"}.get(first["type"], first["msg"])
    loc = tuple(first["loc"])
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # a section whose 'kind:' picks its model: name that field, not pydantic's "discriminator"
        tag = first["ctx"]["discriminator"].strip("'")
        loc += (tag,)
        msg = (f"must be one of {first['ctx']['expected_tags']}, got '{first['ctx']['tag']}'"
               if first["type"] == "union_tag_invalid" else "required field is missing")
    where = ".".join(str(p) for p in loc) or "(top level)"
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    return f"field '{where}': {msg}{more}"


def _misspelt(extra: dict, errors: list[dict]) -> str | None:
    """The missing required field beside an unknown one that it looks like a typo of, if any."""
    parent, name = tuple(extra["loc"][:-1]), str(extra["loc"][-1])
    missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"] and tuple(e["loc"][:-1]) == parent]
    close = difflib.get_close_matches(name, missing, n=1)
    return close[0] if close else None
