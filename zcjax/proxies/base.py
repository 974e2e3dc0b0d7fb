"""What every proxy receives and returns.

A proxy is a pure function ``proxy(inputs, passes) -> ProxyOutput`` over a
:class:`ProxyInputs` (network, variables, genotype, batch, key, options, wide float) and
the results of the shared passes (:class:`Pass`) it declares: one forward/backward can
feed several proxies. The registry (:mod:`zcjax.proxies.registry`) names them;
:func:`zcjax.make_scorer` runs each needed pass once, dependencies first, and every
requested proxy on top.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from zcjax import network as network_lib
from zcjax.proxies.options import Option

Array = jax.Array


class ProxyOutput(NamedTuple):
    """A proxy's result for one architecture.

    Attributes:
      score: the network score (scalar); non-finite values are results, never replaced.
      per_layer: (L,) values aligned with ``network.layers`` whose sum over active layers is
        the score, or None for proxies that do not decompose over layers (jacob_cov,
        naswot, params, flops).
      active: (L,) bool, the layers this architecture uses.
    """

    score: Array
    per_layer: Array | None
    active: Array


@dataclasses.dataclass(frozen=True)
class ProxyInputs:
    """Everything a pass or proxy may read, for one architecture.

    Attributes:
      network: the space's network (its apply function, layer table and active mask).
      variables: the initialised variables (``{"params": ...}``).
      genotype: the architecture, as the network takes it.
      images: (N, H, W, C) float32.
      labels: (N,) int.
      key: the proxies' own random stream (:func:`zcjax.api.noise_key` of the user's key).
      options: validated option values (:func:`zcjax.proxies.validate_options`), read-only:
        ``inputs.options["activation_bn"]``. It must hold every option the proxies read.
      wide: the float type of the wide computations (synflow, kernels, log-determinants,
        correlations): float64, which the scorer makes available by running in x64
        (:func:`zcjax.api.in_x64`). Passes read it instead of the global configuration.
    """

    network: network_lib.Network
    variables: Mapping[str, Any]
    genotype: Array
    images: Array
    labels: Array
    key: Array
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    wide: Any = jnp.float64

    def __post_init__(self):
        object.__setattr__(self, "options", types.MappingProxyType(dict(self.options)))

    @property
    def params(self) -> Mapping[str, Any]:
        return self.variables["params"]

    @property
    def active(self) -> Array:
        return self.network.active(self.genotype)


PassFn = Callable[[ProxyInputs, Mapping[str, Any]], Any]  # (inputs, the passes it requires)
ProxyFn = Callable[[ProxyInputs, Mapping[str, Any]], ProxyOutput]


@dataclasses.dataclass(frozen=True)
class Pass:
    """A shared computation: one forward and/or backward whose result several proxies read.

    Attributes:
      name: the key proxies read its result under (``passes["loss_gradients"]``).
      fn: ``fn(inputs, computed) -> result``; ``computed`` holds the results of exactly the
        passes named in ``requires``.
      requires: the passes it reads; the scorer runs them first (and pulls them in when a
        proxy names only this pass).
      options: the options it reads (:class:`~zcjax.proxies.options.Option`).
    """

    name: str
    fn: PassFn
    requires: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "requires", tuple(self.requires))
        object.__setattr__(self, "options", tuple(self.options))


def layer_sum(inputs: ProxyInputs, per_layer: Array) -> ProxyOutput:
    """The baseline aggregation: the sum of per-layer values over active layers."""
    active = inputs.active
    return ProxyOutput(jnp.sum(network_lib.masked(per_layer, active)), per_layer, active)


def scalar(inputs: ProxyInputs, score: Array) -> ProxyOutput:
    """A score that does not decompose over layers."""
    return ProxyOutput(score, None, inputs.active)


def per_layer(function: Callable[..., Array], *trees: list[Array]) -> Array:
    """Stack ``function(*layer_arrays)`` over the layers into an (L,) vector."""
    return jnp.stack([function(*arrays) for arrays in zip(*trees)])


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean cross-entropy (PyTorch's ``F.cross_entropy``), computed in the logits' dtype."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))
