"""sliver.config: YAML → pydantic with one-line errors that name the field and the fix."""

from typing import Literal

import pytest
from pydantic import Field, PositiveInt

from sliver.config import ConfigError, StrictModel, load


class Train(StrictModel):
    epochs: PositiveInt = 1
    lr: float = 0.1


class Table(StrictModel):
    kind: Literal["nb201"]


class Net(StrictModel):
    kind: Literal["supernet"]


class Run(StrictModel):
    problem: Table | Net = Field(discriminator="kind")
    budget: PositiveInt
    train: Train = Train()


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(Run, path)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_typo_of_a_required_field_names_the_typo_and_the_intended_field(tmp_path):
    msg = _error(tmp_path, "problem: {kind: nb201}\nbudegt: 20\n")
    assert "field 'budegt': unknown field; did you mean 'budget'?" in msg


def test_typo_of_an_optional_field_is_named(tmp_path):
    assert "field 'train.epohcs': unknown field (check its spelling)" in _error(
        tmp_path, "problem: {kind: nb201}\nbudget: 5\ntrain: {epohcs: 2}\n")


def test_wrong_kind_of_file_names_the_missing_required_field_first(tmp_path):
    # a training YAML given where a search YAML belongs: its sections are no typos of 'problem'
    msg = _error(tmp_path, "supernet: {family: mobilenet}\ndata: {name: digits}\n")
    assert msg.endswith("field 'problem': required field is missing (and 3 more error(s))")


def test_bad_value_and_missing_file(tmp_path):
    assert "field 'budget': Input should be greater than 0" in _error(tmp_path, "problem: {kind: nb201}\nbudget: -5\n")
    with pytest.raises(ConfigError, match="config file not found"):
        load(Run, tmp_path / "nope.yaml")


def test_wrong_or_missing_kind_names_the_kind_field(tmp_path):
    assert "field 'problem.kind': must be one of 'nb201', 'supernet', got 'nb210'" in _error(
        tmp_path, "problem: {kind: nb210}\nbudget: 5\n")
    assert "field 'problem.kind': required field is missing" in _error(tmp_path, "problem: {device: raspi4}\nbudget: 5\n")
