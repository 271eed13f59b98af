"""Loading the user's files (YAML configs into pydantic models, CSV tables), with one-line errors.

Each part of sliver defines the pydantic model of its own section next to its
code (e.g. training in ``sliver.train``); this module only holds the shared
reading and error formatting: a bad file is a :class:`ConfigError` that names
the file (and, for YAML, the line and column), never a parser's traceback.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sliver.errors import UserError, one_line

M = TypeVar("M", bound=BaseModel)


class ConfigError(UserError):
    """A YAML config is missing, malformed or has a wrong field; the message is one line."""


class StrictModel(BaseModel):
    """Base for config sections: unknown fields are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML mapping, raising :class:`ConfigError` for a missing file or bad YAML (``what`` names the file's kind)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    data = parse_yaml(read_text(path), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of field: value")
    return data


def read_text(path: Path) -> str:
    """A text file's contents; a binary or unreadable file is a :class:`ConfigError` naming it."""
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (it is not UTF-8); check the path") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error is a one-line :class:`ConfigError` with ``source``, line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:  # e.g. a control character (no line mark)
        raise ConfigError(f"{source}: not valid YAML ({one_line(exc)})") from None
    except ValueError as exc:  # a value YAML recognises but cannot build, e.g. the date 2024-13-45
        raise ConfigError(f"{source}: not valid YAML ({one_line(exc)})") from None


def read_csv(path: str | Path, what: str = "table"):
    """Read a CSV file into a pandas DataFrame; a missing, empty or malformed file is a one-line :class:`ConfigError`."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{path}: the {what} is empty; expected a CSV with a header row") from None
    except pd.errors.ParserError as exc:
        raise ConfigError(f"{path}: not a valid CSV {what} ({one_line(exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (it is not UTF-8); expected a CSV {what}") from None


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
    # a field name that is not plain text (a newline, a control character) is quoted, keeping the message on one line
    where = ".".join(str(p) if str(p).isprintable() else repr(str(p)) for p in loc) or "(top level)"
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    return f"field '{where}': {msg}{more}"


def _misspelt(extra: dict, errors: list[dict]) -> str | None:
    """The missing required field beside an unknown one that it looks like a typo of, if any."""
    parent, name = tuple(extra["loc"][:-1]), str(extra["loc"][-1])
    missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"] and tuple(e["loc"][:-1]) == parent]
    close = difflib.get_close_matches(name, missing, n=1)
    return close[0] if close else None


def numeric_columns(frame, columns: list[str], path: str | Path):
    """A copy of a table read by :func:`read_csv` with ``columns`` as floats (blank cells NaN).

    A cell that is not a number is a :class:`ConfigError` naming the file, row (as a spreadsheet numbers it) and column.
    """
    import pandas as pd

    frame = frame.copy()
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = frame.index[frame[col].notna() & values.isna()]
        if len(bad):
            raise ConfigError(f"{path}: row {bad[0] + 2}, column '{col}': {frame[col][bad[0]]!r} is not a number")
        frame[col] = values.astype(float)
    return frame
