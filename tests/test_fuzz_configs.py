"""Fuzzing every loader of a user's YAML, JSON or CSV file: bad input is a one-line UserError, never another exception.

Each loader gets random text, random YAML/JSON structures, and valid examples
with one part replaced, deleted or cut short (where the deep errors hide).
Seeded (``derandomize``) and small, so it runs in CI in seconds; for a deeper
hunt set ``SLIVER_FUZZ_EXAMPLES=2000 SLIVER_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sliver.errors import UserError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FUZZ = settings(max_examples=int(os.environ.get("SLIVER_FUZZ_EXAMPLES", 40)), deadline=None,
                derandomize=not os.environ.get("SLIVER_FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies
# small numbers only: a fuzzed supernet must not ask for a gigabyte of weights
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.floats(-2, 100),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**30]),
    st.text(string.ascii_letters + string.digits + " _-.<>=/:{}[]", max_size=12),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                      max_leaves=12)


def mutated(example: dict) -> st.SearchStrategy:
    """``example`` with one value somewhere replaced by a random one, or one key deleted."""

    @st.composite
    def strategy(draw):
        data = json.loads(json.dumps(example))  # a deep copy
        node, steps = data, draw(st.integers(0, 4))
        for _ in range(steps):  # walk down a random path
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
            children = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
            if not children:
                break
            node = draw(st.sampled_from(children))[1]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return data
        key = draw(st.sampled_from(keys))
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(values)
        return data

    return strategy()


def documents(example: dict, dump=yaml.safe_dump) -> st.SearchStrategy:
    """Text for a loader of ``example``'s kind: garbage, random structures, mutated or truncated examples."""
    text = dump(example)
    return st.one_of(
        st.text(max_size=80),
        values.map(dump),
        mutated(example).map(dump),
        st.integers(0, len(text)).map(lambda n: text[:n]),  # a file cut short
    )


def assert_one_line_user_error(load) -> None:
    """Run ``load()``; success is fine, a UserError must be one non-empty line, anything else fails the test."""
    try:
        load()
    except UserError as exc:
        message = str(exc).strip()
        assert message and "\n" not in message, repr(message)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


# ------------------------------------------------------------------ YAML configs
@FUZZ
@given(text=documents(example("search_nb201.yaml")))
def test_search_config(tmp_path, text):
    from sliver.config import load
    from sliver.search.config import SearchConfig

    path = write(tmp_path, "search.yaml", text)
    assert_one_line_user_error(lambda: load(SearchConfig, path))


@FUZZ
@given(text=documents(example("train_digits.yaml")))
def test_train_config(tmp_path, text):
    from sliver.train import load_run_config

    path = write(tmp_path, "train.yaml", text)
    assert_one_line_user_error(lambda: load_run_config(path))


@FUZZ
@given(text=documents(example("multitask_mnist.yaml")))
def test_multitask_config(tmp_path, text):
    from sliver.multitask.train import load_run_config

    path = write(tmp_path, "multitask.yaml", text)
    assert_one_line_user_error(lambda: load_run_config(path))


@FUZZ
@given(text=documents({"supernet": {"family": "mobilenet", "preset": "digits", "kernel_sizes": [3, 5], "depths": [1, 2]}}))
def test_supernet_section_of_a_space(tmp_path, text):
    from sliver.config import read_yaml
    from sliver.elastic import from_spec

    path = write(tmp_path, "space.yaml", text)
    assert_one_line_user_error(lambda: from_spec(read_yaml(path).get("supernet"), f"{path}: supernet"))


@FUZZ
@given(text=documents({"fingerprint": {"cpu": "x86_64", "threads": 1}, "fingerprint_hash": "ab12", "unit": "ms", "copies": 4,
                       "entries": {"stem|r8|c3>16": 0.01, "block|r8|k3|e3|c16>16|s1": 0.02}}))
def test_operator_table(tmp_path, text):
    from sliver.predict.lut import OperatorLUT

    path = write(tmp_path, "lut.yaml", text)
    assert_one_line_user_error(lambda: OperatorLUT.load(path))


# ------------------------------------------------------------------ JSON
@FUZZ
@given(text=documents({"dimensions": [{"name": "d", "choices": [1, 2], "length": None},
                                      {"name": "k", "choices": [3, 5], "length": 2}],
                       "gates": [{"depth": "d", "groups": [2], "dims": ["k"], "owners": None}]}, dump=json.dumps))
def test_search_space_json(text):
    from sliver.space import SearchSpace

    assert_one_line_user_error(lambda: SearchSpace.from_json(text))


@FUZZ
@given(text=documents({"ks": [3, 5], "e": [3, 4], "d": [1, 2], "r": 8}, dump=json.dumps))
def test_measure_config_file(tmp_path, text):
    from typer.testing import CliRunner

    from sliver.cli import app

    path = write(tmp_path, "configs.json", text)
    # the configs are read before the (missing) checkpoint, so both errors are reachable
    result = CliRunner().invoke(app, ["measure", "--checkpoint", str(tmp_path / "none.pt"), "--config-file", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)  # 1 with an exception: a traceback
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:")


# ------------------------------------------------------------------ CSV tables
SOURCE_CSV = "arch,lat_ms_a,lat_ms_b\nn1,1.0,2.0\nn2,2.0,4.1\nn3,3.0,5.9\nn4,4.0,8.2\n"
SAMPLES_CSV = "arch,latency_ms\nn1,1.5\nn3,4.4\n"


def csv_texts(valid: str) -> st.SearchStrategy:
    """Garbage, cut short, or the valid table with one cell replaced."""

    @st.composite
    def one_cell(draw):
        rows = [line.split(",") for line in valid.splitlines()]
        r, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(rows[0]) - 1))
        rows[r][c] = draw(st.text(string.ascii_letters + string.digits + ".-\" ", max_size=6) | st.sampled_from(["", "nan", "-1", "inf"]))
        return "\n".join(",".join(row) for row in rows) + "\n"

    return st.one_of(st.text(max_size=60), st.integers(0, len(valid)).map(lambda n: valid[:n]), one_cell())


@FUZZ
@given(source=csv_texts(SOURCE_CSV), samples=csv_texts(SAMPLES_CSV))
def test_latency_transfer_tables(tmp_path, source, samples):
    from sliver.cli.latency import read_samples, read_source_table
    from sliver.predict.transfer import transfer

    src, smp = write(tmp_path, "source.csv", source), write(tmp_path, "samples.csv", samples)
    assert_one_line_user_error(lambda: transfer(read_source_table(src, None, None), read_samples(smp, None, "latency_ms")))


NB201_SAMPLES_CSV = ("arch_str,latency_ms\n|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|,"
                     "12.5\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1.2\n")


@pytest.fixture(scope="module")
def nb201():
    from sliver.bench.nb201 import NB201

    try:
        return NB201("raspi4", "cifar10")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@settings(FUZZ, max_examples=max(1, FUZZ.max_examples // 2))  # each example fits a transfer model
@given(text=csv_texts(NB201_SAMPLES_CSV))
def test_nb201_transfer_samples(tmp_path, nb201, text):
    from sliver.search.config import LatencyModelSpec

    path = write(tmp_path, "samples.csv", text)
    spec = LatencyModelSpec.model_validate({"transfer": {"devices": ["pixel3"], "samples": str(path)}})
    assert_one_line_user_error(lambda: spec.build(None, nb201))


HAT_CSV = ("encoder_embed_dim,encoder_layer_num,encoder_ffn_embed_dim_avg,encoder_self_attention_heads_avg,decoder_embed_dim,"
           "decoder_layer_num,decoder_ffn_embed_dim_avg,decoder_self_attention_heads_avg,decoder_ende_attention_heads_avg,"
           "decoder_arbitrary_ende_attn_avg,latency_mean_encoder,latency_mean_decoder\n"
           "512,6,2048,8,512,6,2048,8,8,-1,10.5,20.1\n640,6,3072,8,640,5,3072,8,8,1,12.0,25.2\n")


@FUZZ
@given(text=csv_texts(HAT_CSV))
def test_hat_latency_table(tmp_path, text):
    from sliver.predict.hat import load_latency

    path = write(tmp_path, "hat.csv", text)
    assert_one_line_user_error(lambda: load_latency(path))


@pytest.mark.parametrize("name", ["search_nb201.yaml", "train_digits.yaml", "multitask_mnist.yaml"])
def test_the_valid_examples_load(name):
    # the fuzzed documents start from these: they must be valid, or the mutations test nothing deep
    from sliver.config import load
    from sliver.multitask.train import load_run_config as load_multitask
    from sliver.search.config import SearchConfig
    from sliver.train import load_run_config

    loader = {"search_nb201.yaml": lambda p: load(SearchConfig, p), "train_digits.yaml": load_run_config,
              "multitask_mnist.yaml": load_multitask}[name]
    assert loader(EXAMPLES / name)
