"""params and flops: counts of the active network (the benchmark's conventions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from zcjax.proxies.base import ProxyInputs, ProxyOutput, scalar


def params(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Parameters of the active network, in millions (NAS-Bench-201's ``params_mb``)."""
    count = inputs.network.param_count(inputs.genotype)
    return scalar(inputs, jnp.asarray(count, jnp.float32) / 1e6)


def flops(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """FLOPs of the active network for one image, in millions."""
    count = inputs.network.flops(inputs.genotype)
    return scalar(inputs, jnp.asarray(count, jnp.float32) / 1e6)
