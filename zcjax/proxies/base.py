"""What every proxy receives and returns.

A proxy is a pure function ``proxy(inputs, passes) -> ProxyOutput`` over a
:class:`ProxyInputs` (network, variables, genotype, batch, key, options) and the results
of the shared passes it declares (one forward/backward can feed several proxies). The
registry (:mod:`zcjax.proxies.registry`) names them; :func:`zcjax.make_scorer` runs each
needed pass once and every requested proxy on top.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from zcjax import network as network_lib

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
class Options:
    """Static choices that change what a proxy computes (documented conventions).

    Attributes:
      synflow_reduction_bn: keep BatchNorm (batch statistics) inside the residual
        reduction blocks for synflow, as foresight's NB201 model does; the default
        removes every BatchNorm, as alethiometer does for a network without its own
        ``get_prunable_copy``.
      activation_bn: BatchNorm mode for the activation-pattern proxies (naswot, nwot,
        lnwot): ``"init"`` (default) is eval mode at initialisation (running mean 0,
        variance 1), what alethiometer runs (``net.eval()``); ``"batch"`` uses batch
        statistics.
      grasp_temperature: GraSP's logit temperature T (reference: 1).
      naswot_wrapper_hooks: naswot also counts the input of each module whose class name
        contains "ReLU" without being one (NB201's ``ReLUConvBN``), as the reference
        implementations' hooks do (default); False counts ReLU modules only.
      tenas_inputs: what ntk and linear_regions see: ``"batch"`` (default) the
        minibatch, as TE-NAS's own code; ``"gaussian"`` a standard-normal batch of the
        same shape drawn from the key, as alethiometer does.
      zico_accumulate: zico's second gradient is that of both half-batches (g1 + g2),
        as alethiometer's accumulating backward passes give; the default (False) uses
        each half's own gradient, as the original ZiCo code.
    """

    synflow_reduction_bn: bool = False
    activation_bn: str = "init"
    grasp_temperature: float = 1.0
    naswot_wrapper_hooks: bool = True
    tenas_inputs: str = "batch"
    zico_accumulate: bool = False

    def __post_init__(self):
        choices = {"activation_bn": ("init", "batch"), "tenas_inputs": ("batch", "gaussian")}
        for field, valid in choices.items():
            if getattr(self, field) not in valid:
                raise ValueError(f"option {field}={getattr(self, field)!r} is not one of "
                                 f"{', '.join(map(repr, valid))}")


@dataclasses.dataclass(frozen=True)
class ProxyInputs:
    """Everything a pass or proxy may read, for one architecture."""

    network: network_lib.Network
    variables: Mapping[str, Any]
    genotype: Array
    images: Array
    labels: Array
    key: Array
    options: Options = Options()

    @property
    def params(self) -> Mapping[str, Any]:
        return self.variables["params"]

    @property
    def active(self) -> Array:
        return self.network.active(self.genotype)


Pass = Callable[[ProxyInputs, Mapping[str, Any]], Any]  # (inputs, passes computed so far)
ProxyFn = Callable[[ProxyInputs, Mapping[str, Any]], ProxyOutput]


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


def wide_float():
    """float64 when x64 is enabled (the scorer enables it in scope), else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean cross-entropy (PyTorch's ``F.cross_entropy``), computed in the logits' dtype."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))
