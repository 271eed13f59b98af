"""choose_targets: LINAS on the start weights, then a hill climb that fills each size (GrowWithin)."""

from __future__ import annotations

import pytest

from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore
from sliver.train.targets import GrowWithin, choose_targets

WIDTHS = (1, 2, 3, 4)


class Blocks:
    """A stand-in super-network: eight blocks, each 1-4 units wide; a block's units cost 10 + its index each.

    Its quality (a loss, lower is better) falls with every unit kept, the
    earlier blocks' units counting more, so within a size the best network
    spends as much of the size as it can.
    """

    def __init__(self):
        self.space = SearchSpace([Dimension("w", WIDTHS, 8)])
        self.training = True

    def costs(self, config):
        return {"params": float(sum(w * (10 + i) for i, w in enumerate(config["w"])))}

    def max_config(self):
        return self.space.max_config()

    def min_config(self):
        return self.space.min_config()

    def activate(self, config):
        return config

    def train(self, mode=True):
        self.training = mode

    def eval(self):
        self.train(False)


def loss(config) -> float:
    return float(100.0 - sum(w * (3.0 - 0.2 * i) for i, w in enumerate(config["w"])))


def test_hill_climb_fills_each_size_with_a_better_network_than_the_search_alone(tmp_path):
    net = Blocks()
    full = net.costs(net.max_config())["params"]
    sizes = [0.75, 0.5]
    alone = choose_targets(net, loss, sizes, cost="params", budget=8, refine=0, seed=0)
    store = ResultStore(f"sqlite:///{tmp_path / 'targets.db'}")
    calls = []

    def counted(config):
        calls.append(config)
        return loss(config)

    climbed = choose_targets(net, counted, sizes, cost="params", budget=8, refine=6, store=store, seed=0)
    assert len(calls) <= 8 + 6 * len(sizes)
    assert net.training  # put back as it was
    cheapest_unit = 10.0  # block 0's
    for size, before, after in zip(sizes, alone, climbed):
        limit = size * full
        assert net.costs(before)["params"] <= net.costs(after)["params"] <= limit
        assert loss(after) <= loss(before)  # the climb keeps only measured improvements
        # here every growth improves, so the climb stops only when no unit fits any more
        assert limit - net.costs(after)["params"] < cheapest_unit
    assert any(loss(a) < loss(b) for a, b in zip(climbed, alone))  # LINAS's 8 left room in at least one size
    # a rerun on the same store measures nothing and chooses the same networks
    calls.clear()
    assert choose_targets(net, counted, sizes, cost="params", budget=8, refine=6, store=store, seed=0) == climbed
    assert calls == []


def test_grow_within_asks_only_growths_that_fit_most_costly_first():
    from types import SimpleNamespace

    from sliver.search.base import Outcome

    net = Blocks()
    cost = lambda c: net.costs(c)["params"]  # noqa: E731
    base = {"w": [2, 2, 2, 2, 1, 1, 1, 1]}
    limit = cost(base) + 14.0  # room for one unit of blocks 0-4 (10-14), not of blocks 5-7 (15-17)
    grow = GrowWithin(cost, [limit], "params", "loss")
    grow.setup(SimpleNamespace(space=net.space, seed=0, passes_cheap=lambda c: True))  # what the search loop binds
    grow.tell([base], [Outcome({"loss": loss(base), "params": cost(base)})])
    first = grow.ask(1)[0]
    assert cost(first) == cost(base) + 14.0 and first["w"][4] == 2  # the costliest growth that fits
    grow.tell([first], [Outcome({"loss": loss(base) + 1.0, "params": cost(first)})])  # measured worse: keep the base
    second = grow.ask(1)[0]
    assert cost(second) == cost(base) + 13.0 and second["w"][3] == 3
    grow.tell([second], [Outcome({"loss": loss(base) - 1.0, "params": cost(second)})])  # better: grow it instead
    assert grow.ask(1) == []  # one unit of room is left: no growth fits, so nothing more to ask


def test_refine_must_not_be_negative():
    from sliver.config import ConfigError, validate
    from sliver.train.config import TargetsSection

    with pytest.raises(ConfigError, match="refine"):
        validate(TargetsSection, {"sizes": [0.5], "refine": -1})
