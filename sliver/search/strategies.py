"""Imports every built-in strategy module so that each registers itself."""

from sliver.search import evolutionary, linas, random, tpe  # noqa: F401
