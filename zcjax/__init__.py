"""zcjax: zero-cost neural architecture search proxies in JAX/Flax.

Score a randomly initialised architecture from one minibatch, rank architectures, and
measure how well the ranking agrees with trained accuracies.
"""

from zcjax import aggregate, benchmarks, cache, data, initialisation, metrics, proxies, report
from zcjax.api import Scorer, make_scorer, score
from zcjax.network import Layer, Network
from zcjax.report import correlate
from zcjax.space import SearchSpace, get_space, register_space, space_names

__version__ = "0.1.0"

__all__ = [
    "Layer",
    "Network",
    "Scorer",
    "SearchSpace",
    "aggregate",
    "benchmarks",
    "cache",
    "correlate",
    "data",
    "get_space",
    "initialisation",
    "make_scorer",
    "metrics",
    "proxies",
    "register_space",
    "report",
    "score",
    "space_names",
]
