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


# ------------------------------------------------------ populations as matrices
def _reference_active(space, config):
    """The depth gates' rule written out config by config, independently of the vectorised path."""
    active = {d.name: [True] * d.n_genes for d in space.dimensions}
    for gate in space.gates:
        depths = config[gate.depth] if space[gate.depth].length is not None else [config[gate.depth]]
        blocks = [j < depth for n, depth in zip(gate.groups, depths) for j in range(n)]
        for k, name in enumerate(gate.dims):
            owners = gate.gene_owners(k, space[name].n_genes)
            active[name] = [a and (o < 0 or blocks[o]) for a, o in zip(active[name], owners)]
    return [a for d in space.dimensions for a in active[d.name]]


def _reference_features(space, config):
    vec = space.encode(config)
    starts = np.concatenate([[0], np.cumsum(space.gene_cardinalities)[:-1]])
    out = np.zeros(space.n_features)
    out[(starts + vec)[np.array(_reference_active(space, config))]] = 1.0
    return out


def _spaces():
    owned = SearchSpace([Dimension("width", (0.5, 1.0), 4), Dimension("depth", (0, 1), 3)],
                        [DepthGate("depth", (1, 1, 1), ("width",), ((-1, 1, 1, -1),))])
    scalar = SearchSpace([Dimension("layers", (2, 4)), Dimension("heads", (4, 8), 4)], [DepthGate("layers", (4,), ("heads",))])
    plain = SearchSpace([Dimension("width", (16, 32, 64), 3), Dimension("bits", (4, 8, 16))])
    return [ofa_like(), small(), owned, scalar, plain]


@pytest.mark.parametrize("space", _spaces(), ids=["ofa", "small", "owners", "scalar", "ungated"])
def test_vectorised_operations_equal_the_per_config_ones(space):
    configs = space.sample(0, n=300)
    X = space.encode_many(configs)
    assert np.array_equal(X, np.stack([space.encode(c) for c in configs]))
    F = space.features_vectors(X)
    assert np.array_equal(F, np.stack([_reference_features(space, c) for c in configs]))  # bit for bit
    assert np.array_equal(F, space.features(configs))
    C = space.canonical_vectors(X)
    assert [space.decode(c) for c in C] == [space.canonical(c) for c in configs]
    assert np.array_equal(space.active_vectors(X), [_reference_active(space, c) for c in configs])
    keys = space.keys(X)
    # equal row keys exactly where the stable keys are equal
    by_key = {}
    for k, c in zip(keys, configs):
        by_key.setdefault(k, set()).add(space.key(c))
    assert all(len(v) == 1 for v in by_key.values())
    assert len(set(keys)) == len({space.key(c) for c in configs})
    assert space.keys(C) == keys


def test_valid_vectors_flags_rows_outside_the_space():
    space = ofa_like()
    X = space.encode_many(space.sample(1, n=4)).astype(float)
    X[1, 0] = 3  # ks has 3 choices: indices 0..2
    X[2, 5] = 0.5
    X[3, -1] = -1
    assert space.valid_vectors(X).tolist() == [True, False, False, False]
    with pytest.raises(SpaceError, match="dimension 'ks': gene 0 has index 3"):
        space.features_vectors(X[:2])


def test_neighbour_vectors_move_each_gene_to_each_other_choice():
    space = ofa_like()
    x = space.encode(space.sample(3))
    N = space.neighbour_vectors(x)  # one vector is one row
    card = space.gene_cardinalities
    assert len(N) == int((card - 1).sum()) and space.valid_vectors(N).all()
    assert ((N != x).sum(1) == 1).all() and len({r.tobytes() for r in N}) == len(N)
    assert np.array_equal(space.neighbour_vectors(np.stack([x, x])), np.vstack([N, N]))


def test_features_of_ten_thousand_configs_are_one_vectorised_call():
    """The paths a large search runs every round: one numpy pass, no config-by-config checks."""
    import time

    from sliver.elastic.mobilenet import ElasticMobileNet

    space = ElasticMobileNet.from_preset("imagenet").space
    X = np.random.default_rng(0).integers(0, space.gene_cardinalities, size=(10_000, space.n_genes))
    start = time.perf_counter()
    F, keys = space.features_vectors(X), space.keys(X)
    took = time.perf_counter() - start
    rows = np.random.default_rng(1).choice(len(X), 200, replace=False)
    assert np.array_equal(F[rows], np.stack([_reference_features(space, space.decode(X[i])) for i in rows]))
    assert [keys[i] for i in rows] == space.keys(np.stack([space.encode(space.canonical(space.decode(X[i]))) for i in rows]))
    assert took < 2.0  # config by config it took seconds, a hundred times longer
