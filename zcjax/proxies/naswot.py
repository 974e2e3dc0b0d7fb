"""naswot: the log-determinant of the ReLU activation-pattern kernel.

Reference: Mellor et al., "Neural Architecture Search without Training", ICML 2021 (the
original ReLU-input version; alethiometer's ``nwot_relu``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from zcjax.network import sown_values
from zcjax.proxies.base import ProxyInputs, ProxyOutput, scalar, wide_float

Array = jax.Array


def binary_code_kernel(x: Array) -> Array:
    """K = c c^T + (1-c)(1-c)^T for c = (x > 0) per sample: agreements of the codes.

    Computed as (s s^T + D) / 2 with s = 2c - 1 in {-1, +1}: one matmul, exact in
    float32 for D < 2^24, returned as float64 when x64 is on (for the log-determinant).
    """
    codes = x.reshape(x.shape[0], -1) > 0
    signs = jnp.where(codes, 1.0, -1.0).astype(jnp.float32)
    agreements = (signs @ signs.T + codes.shape[1]) / 2
    return agreements.astype(wide_float())


def safe_logdet(kernel: Array) -> Array:
    """log |det K|, and 0 for a singular K (the reference's ``safe_hooklogdet``)."""
    sign, logdet = jnp.linalg.slogdet(kernel)
    return jnp.where(sign == 0, jnp.zeros_like(logdet), logdet)


def naswot(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """log|det K|, K summed over every ReLU of the network (their inputs' codes).

    A tensor read by several ReLU modules of the reference network (a cell node feeding
    several conv ops) counts once per ReLU.
    """
    kernel = 0.0
    for relu_inputs, counts in sown_values(passes["activations"]["relu"]):
        site_shape = counts.shape  # leading axes of stacked sites
        per_site = relu_inputs.reshape((-1,) + relu_inputs.shape[len(site_shape):])
        kernels = jax.vmap(binary_code_kernel)(per_site)
        kernel = kernel + jnp.tensordot(counts.reshape(-1).astype(kernels.dtype), kernels, 1)
    return scalar(inputs, safe_logdet(kernel))
