"""Sampling rules: sandwich, uniform, nested and progressive shrinking, and their resumable state."""

import numpy as np
import pytest

from sliver.errors import UserError
from sliver.space import DepthGate, Dimension, SearchSpace, SpaceError
from sliver.train.sampling import FixedRule, NestedRule, Phase, ProgressiveRule, SandwichRule, UniformRule, default_phases


def mobilenet_like():
    return SearchSpace(
        [Dimension("ks", (3, 5, 7), 4), Dimension("e", (3, 4, 6), 4), Dimension("d", (1, 2), 2), Dimension("r", (20, 28))],
        [DepthGate("d", (2, 2), ("ks", "e"))],
    )


def test_sandwich_has_max_and_min_every_step_plus_n_random():
    space = mobilenet_like()
    rule = SandwichRule(space, n=3, seed=0)
    seen = set()
    for step in range(20):
        picks = rule.picks(step)
        assert [p.role for p in picks] == ["max", "min", "random", "random", "random"]
        assert picks[0].config == space.max_config() and picks[0].teacher
        assert picks[1].config == space.min_config() and not picks[1].teacher
        seen |= {space.key(p.config) for p in picks[2:]}
    assert len(seen) > 40  # the random ones really vary
    assert rule.distill


def test_sandwich_shares_one_resolution_per_step():
    space = mobilenet_like()
    rule = SandwichRule(space, n=2, seed=0, shared=["r"])
    resolutions = []
    for step in range(40):
        picks = rule.picks(step)
        r = {p.config["r"] for p in picks}
        assert len(r) == 1  # every pick of the step runs at the same resolution
        resolutions.append(r.pop())
        # still the largest and smallest networks in every other dimension
        assert picks[0].config == {**space.max_config(), "r": resolutions[-1]} and picks[0].teacher
        assert picks[1].config == {**space.min_config(), "r": resolutions[-1]}
    assert set(resolutions) == {20, 28}
    with pytest.raises(SpaceError, match="unknown dimension 'res'"):
        SandwichRule(space, shared=["res"])


def test_uniform_draws_one_network_uniformly():
    space = mobilenet_like()
    rule = UniformRule(space, seed=1)
    picks = [rule.picks(s) for s in range(3000)]
    assert all(len(p) == 1 and not p[0].teacher for p in picks) and not rule.distill
    ks = np.array([p[0].config["ks"] for p in picks])
    # each kernel size about a third of the time, in every block
    for k in (3, 5, 7):
        assert np.all(np.abs((ks == k).mean(axis=0) - 1 / 3) < 0.04)


def test_nested_ladder_is_sorted_and_nested():
    space = mobilenet_like()
    rule = NestedRule(space, n=2, seed=0)
    assert len(rule.ladder) == 3
    assert rule.ladder[0] == space.min_config() and rule.ladder[-1] == space.max_config()
    enc = np.array([space.encode(c) for c in rule.ladder])
    assert np.all(np.diff(enc, axis=0) >= 0)  # each rung contains the one below
    for step in range(30):
        picks = rule.picks(step)
        rungs = [rule.ladder.index(p.config) for p in picks]
        assert len(rungs) == 2 and rungs == sorted(set(rungs))  # distinct, smallest first
    with pytest.raises(SpaceError, match="n=5"):
        NestedRule(space, n=5)


def test_progressive_phases_unlock_dimensions_in_order():
    space = mobilenet_like()
    phases = default_phases(space, epochs=8, lr=0.1)
    assert [(p.name, p.epochs, p.unlock) for p in phases] == [
        ("full", 2, []), ("kernel", 2, ["ks"]), ("depth", 2, ["d"]), ("expand", 2, ["e"])]
    rule = ProgressiveRule(space, phases, steps_per_epoch=5, n=2, seed=0)
    varied: dict[str, set] = {}
    for step in range(40):
        phase = rule.phase(step)
        picks = rule.picks(step)
        assert picks[0].config == space.max_config() and picks[0].teacher
        for p in picks[1:]:
            for dim in space.names:
                if p.config[dim] != space.max_config()[dim]:
                    varied.setdefault(phase, set()).add(dim)
        if phase == "full":
            assert len(picks) == 1  # only the full network trains first
    # resolution (named by no phase) is elastic from the first shrinking phase; the others open in order
    assert varied["kernel"] == {"ks", "r"}
    assert varied["depth"] == {"ks", "d", "r"}
    assert varied["expand"] == {"ks", "d", "e", "r"}
    assert rule.unlocked(0) == ["r"] and rule.unlocked(39) == ["ks", "e", "d", "r"]
    assert rule.phase(10_000) == "expand"


def test_progressive_errors_name_the_dimension():
    space = mobilenet_like()
    with pytest.raises(SpaceError, match="unknown dimension 'width'"):
        ProgressiveRule(space, [Phase("a", 1, 0.1, ["width"])], steps_per_epoch=1)
    other = SearchSpace([Dimension("w", (1, 2))])
    with pytest.raises(SpaceError, match="set train.sampling.phases"):
        default_phases(other, epochs=4, lr=0.1)


def test_state_dict_resumes_the_same_draws():
    space = mobilenet_like()
    rule = SandwichRule(space, seed=5)
    for step in range(7):
        rule.picks(step)
    state = rule.state_dict()
    expected = [rule.picks(s) for s in range(7, 12)]
    again = SandwichRule(space, seed=123)
    again.load_state_dict(state)
    assert [p.config for s in range(7, 12) for p in again.picks(s)] == [p.config for ps in expected for p in ps]
    with pytest.raises(ValueError, match="sampling rule 'sandwich'"):
        UniformRule(space).load_state_dict(state)


def wide_space():
    """Twelve independent genes of four ordered choices (like heads and FFN width of a 6-layer encoder)."""
    return SearchSpace([Dimension("heads", (6, 8, 10, 12), 6), Dimension("ffn", (512, 768, 1024, 1536), 6)])


def draw_indices(rule, n):
    return np.array([rule.space.encode(rule.random_config()) for _ in range(n)])


def test_correlated_draw_keeps_every_choice_equally_likely_but_spreads_the_network_size():
    space = wide_space()
    independent = draw_indices(UniformRule(space, seed=0), 4000)
    correlated = draw_indices(UniformRule(space, seed=0, draw="correlated"), 4000)
    # each gene still takes each of its 4 choices about a quarter of the time
    for k in range(4):
        assert np.all(np.abs((correlated == k).mean(axis=0) - 0.25) < 0.03)
    # but the genes move together: whole networks reach the small and large ends
    size_ind, size_cor = independent.sum(axis=1), correlated.sum(axis=1)
    assert size_cor.std() > 2 * size_ind.std()
    all_lower_half = lambda idx: (idx <= 1).all(axis=1).mean()  # noqa: E731
    assert all_lower_half(independent) < 0.01 and all_lower_half(correlated) > 0.1
    # and the configs are valid members of the space
    rule = UniformRule(space, seed=1, draw="correlated")
    for _ in range(20):
        config = rule.random_config()
        assert space.key(space.canonical(config)) == space.key(config)


def test_correlated_draw_keeps_frozen_dimensions_and_resumes():
    space = wide_space()
    rule = ProgressiveRule(space, [Phase("full", 1, 0.1, []), Phase("ffn", 1, 0.1, ["ffn"]), Phase("heads", 1, 0.1, ["heads"])],
                           steps_per_epoch=5, n=2, seed=3, draw="correlated")
    for step in range(5, 10):  # ffn elastic, heads frozen at the largest
        assert all(p.config["heads"] == [12] * 6 for p in rule.picks(step))
    state = rule.state_dict()
    ahead = [p.config for p in rule.picks(10)]
    again = ProgressiveRule(space, rule.phases, steps_per_epoch=5, n=2, seed=99, draw="correlated")
    again.load_state_dict(state)
    assert [p.config for p in again.picks(10)] == ahead


def test_unknown_draw_is_refused():
    with pytest.raises(SpaceError, match="draw"):
        UniformRule(wide_space(), draw="gaussian")


def test_fixed_trains_the_listed_networks_every_step_with_the_largest_teaching_in_place():
    space = mobilenet_like()
    listed = [space.min_config(), space.decode(np.ones(len(space.gene_cardinalities), dtype=int))]
    rule = FixedRule(space, listed)
    for step in range(3):
        picks = rule.picks(step)
        assert [p.role for p in picks] == ["max", "fixed", "fixed"] and picks[0].teacher
        assert [p.config for p in picks[1:]] == listed
    rule.largest_teaches = False  # a frozen original teaches: only the listed ones train
    assert [p.config for p in rule.picks(0)] == listed and not any(p.teacher for p in rule.picks(0))
    with pytest.raises(SpaceError, match="ks"):
        FixedRule(space, [{**space.max_config(), "ks": [4, 4, 4, 4]}])
    with pytest.raises(SpaceError, match="at least one"):
        FixedRule(space, [])
    FixedRule(space, listed).load_state_dict(rule.state_dict())  # the same networks resume
    with pytest.raises(UserError, match="other 'configs'"):
        FixedRule(space, listed[:1]).load_state_dict(rule.state_dict())
