"""SearchSpace: encoding, canonical keys, counting, features, JSON and errors."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sliver.space import DepthGate, Dimension, SearchSpace, SpaceError


def ofa_like(blocks=(4, 4, 4, 4, 4)):
    n = sum(blocks)
    return SearchSpace(
        [
            Dimension("ks", (3, 5, 7), n),
            Dimension("e", (3, 4, 6), n),
            Dimension("d", (2, 3, 4), len(blocks)),
            Dimension("r", (160, 192, 224)),
        ],
        [DepthGate("d", blocks, ("ks", "e"))],
    )


def small():
    # 2 stages of 2 blocks, depth {1,2}: small enough to enumerate by brute force
    return SearchSpace(
        [Dimension("k", (3, 5), 4), Dimension("d", (1, 2), 2), Dimension("r", (8, 16))],
        [DepthGate("d", (2, 2), ("k",))],
    )


def test_encode_decode_round_trip():
    space = ofa_like()
    for cfg in space.sample(0, n=50):
        vec = space.encode(cfg)
        assert vec.shape == (space.n_genes,)
        assert space.decode(vec) == cfg


def test_sample_is_seeded():
    space = ofa_like()
    assert space.sample(3, n=5) == space.sample(3, n=5)
    assert space.sample(3, n=5) != space.sample(4, n=5)


def test_inactive_values_share_a_key():
    space = ofa_like()
    cfg = space.max_config()
    cfg["d"] = [2, 4, 4, 4, 4]
    other = json.loads(json.dumps(cfg))
    other["ks"][3] = 3  # block 3 of stage 0 is dropped by depth 2
    other["e"][2] = 4
    assert space.key(cfg) == space.key(other)
    assert space.inactive(cfg) == {"ks": [2, 3], "e": [2, 3]}
    other["ks"][1] = 3  # an active block: a different network
    assert space.key(cfg) != space.key(other)


def test_count_matches_brute_force():
    space = small()
    brute = set()
    for vec in np.ndindex(*space.gene_cardinalities):
        brute.add(space.key(space.decode(np.array(vec))))
    assert space.count() == len(brute) == len(space.enumerate())
    # (2 + 2*2) per stage, squared, times 2 resolutions
    assert space.count() == 6 * 6 * 2


def test_ofa_count_is_of_the_order_of_ofa():
    space = SearchSpace(
        [Dimension("ks", (3, 5, 7), 20), Dimension("e", (3, 4, 6), 20), Dimension("d", (2, 3, 4), 5)],
        [DepthGate("d", (4,) * 5, ("ks", "e"))],
    )
    assert space.count() == (9**2 + 9**3 + 9**4) ** 5
    assert 1e19 < space.count() < 1e20


def test_features_zero_inactive_genes():
    space = ofa_like()
    cfg = space.min_config()  # depth 2 everywhere: blocks 2,3 of each stage inactive
    f = space.features(cfg)
    assert f.shape == (space.n_features,)
    # active genes contribute one 1 each: 10 ks + 10 e + 5 d + 1 r
    assert f.sum() == 10 + 10 + 5 + 1
    batch = space.features(space.sample(1, n=4))
    assert batch.shape == (4, space.n_features)
    # canonical duplicates have equal features
    other = dict(cfg, ks=list(cfg["ks"]))
    other["ks"][3] = 7
    assert np.array_equal(space.features(other), f)


def test_json_round_trip():
    space = ofa_like()
    again = SearchSpace.from_json(space.to_json())
    assert again == space
    assert again.count() == space.count()
    cfg = space.sample(2)
    assert again.key(cfg) == space.key(cfg)


def test_max_and_min_configs():
    space = ofa_like()
    assert space.max_config()["ks"] == [7] * 20
    assert space.min_config()["d"] == [2] * 5
    assert space.max_config()["r"] == 224


@pytest.mark.parametrize(
    "mutate, name",
    [
        (lambda c: c.update(zz=1), "zz"),
        (lambda c: c.pop("r"), "r"),
        (lambda c: c.update(r=100), "r"),
        (lambda c: c["ks"].__setitem__(4, 9), "ks[4]"),
        (lambda c: c.update(d=[2, 3]), "d"),
        (lambda c: c.update(e="big"), "e"),
    ],
)
def test_bad_configs_raise_space_error_naming_the_dimension(mutate, name):
    space = ofa_like()
    cfg = space.max_config()
    mutate(cfg)
    with pytest.raises(SpaceError, match=rf"'{name.split('[')[0]}"):
        space.validate(cfg)
    with pytest.raises(SpaceError) as info:
        space.key(cfg)
    assert name.split("[")[0] in str(info.value)


def test_out_of_range_value_lists_allowed_values():
    space = ofa_like()
    cfg = space.max_config()
    cfg["r"] = 100
    with pytest.raises(SpaceError, match=r"allowed values \[160, 192, 224\]"):
        space.validate(cfg)


def test_decode_rejects_bad_vectors():
    space = small()
    with pytest.raises(SpaceError, match="genes"):
        space.decode([0, 0])
    with pytest.raises(SpaceError, match="'k'"):
        space.decode([5, 0, 0, 0, 0, 0, 0])


def test_bad_space_definitions():
    with pytest.raises(SpaceError, match="unique"):
        SearchSpace([Dimension("a", (1, 2)), Dimension("a", (1, 2))])
    with pytest.raises(SpaceError, match="distinct"):
        Dimension("a", (1, 1))
    with pytest.raises(SpaceError, match="length"):
        SearchSpace([Dimension("k", (3, 5), 3), Dimension("d", (1, 2), 2)], [DepthGate("d", (2, 2), ("k",))])
    with pytest.raises(SpaceError, match="exceeds"):
        SearchSpace([Dimension("k", (3, 5), 4), Dimension("d", (1, 3), 2)], [DepthGate("d", (2, 2), ("k",))])


def test_scalar_depth_gate():
    # a transformer-like space: layers in {2,4}, heads per layer
    space = SearchSpace(
        [Dimension("layers", (2, 4)), Dimension("heads", (4, 8), 4)],
        [DepthGate("layers", (4,), ("heads",))],
    )
    assert space.count() == 2**2 + 2**4
    cfg = {"layers": 2, "heads": [4, 8, 8, 8]}
    assert space.canonical(cfg) == {"layers": 2, "heads": [4, 8, 4, 4]}


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_canonical_is_idempotent_and_keeps_the_key(seed):
    space = ofa_like()
    cfg = space.sample(seed)
    canon = space.canonical(cfg)
    assert space.canonical(canon) == canon
    assert space.key(canon) == space.key(cfg)
    assert space.decode(space.encode(canon)) == canon


def test_depth_gate_owners_let_a_block_own_any_genes():
    # 3 blocks, each skippable alone; width genes 0 and 3 belong to no block, block 1 owns genes 1 and 2
    space = SearchSpace(
        [Dimension("width", (0.5, 1.0), 4), Dimension("depth", (0, 1), 3)],
        [DepthGate("depth", (1, 1, 1), ("width",), ((-1, 1, 1, -1),))],
    )
    config = {"width": [0.5, 0.5, 1.0, 1.0], "depth": [1, 0, 1]}
    assert space.active_mask(config)["width"] == [True, False, False, True]
    assert space.canonical(config)["width"] == [0.5, 0.5, 0.5, 1.0]
    assert space.count() == len(space.enumerate()) == 2 * 2 * (2 * (1 + 4) * 2)
    assert SearchSpace.from_dict(space.to_dict()) == space
    with pytest.raises(SpaceError, match="owners of 'width'"):
        SearchSpace([Dimension("width", (0.5, 1.0), 2), Dimension("depth", (0, 1), 1)],
                    [DepthGate("depth", (1,), ("width",), ((0, 5),))])
