"""zcjax: zero-cost neural architecture search proxies in JAX/Flax.

Score a randomly initialised architecture from one minibatch, rank architectures, and
measure how well the ranking agrees with trained accuracies.
"""

from zcjax import aggregate, data, metrics, proxies
from zcjax.api import Scorer, get_space, make_scorer, score
from zcjax.network import Layer, Network

__version__ = "0.1.0"

__all__ = [
    "Layer",
    "Network",
    "Scorer",
    "aggregate",
    "data",
    "get_space",
    "make_scorer",
    "metrics",
    "proxies",
    "score",
]
