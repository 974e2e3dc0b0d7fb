"""Activation-pattern kernels: naswot (ReLU inputs), nwot and lnwot (Conv/Linear outputs).

References:
  Mellor et al., "Neural Architecture Search without Training", ICML 2021 (naswot, the
  original ReLU-input version; alethiometer's ``nwot_relu``). Xiang et al., "Exploiting
  Network Compressibility and Topology in Zero-Cost NAS", AutoML-Conf 2023 (nwot, lnwot).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zcjax import linalg
from zcjax.network import get_path, sown_values
from zcjax.proxies.base import ProxyInputs, ProxyOutput, layer_sum, scalar
from zcjax.proxies.options import Option

Array = jax.Array

WRAPPER_HOOKS = Option(
    "naswot_wrapper_hooks", True,
    doc='naswot also counts the input of each module whose class name contains "ReLU" '
        "without being one (NB201's ``ReLUConvBN``), as the reference implementations' "
        "hooks do (default); False counts ReLU modules only.")


def binary_code_kernel(x: Array, wide) -> Array:
    """K = c c^T + (1-c)(1-c)^T for c = (x > 0) per sample: agreements of the codes.

    Computed as (s s^T + D) / 2 with s = 2c - 1 in {-1, +1}: one matmul, exact in
    float32 for D < 2^24, returned as ``wide`` (``ProxyInputs.wide``, float64, for the
    log-determinant).
    """
    codes = x.reshape(x.shape[0], -1) > 0
    signs = jnp.where(codes, 1.0, -1.0).astype(jnp.float32)
    agreements = (signs @ signs.T + codes.shape[1]) / 2
    return agreements.astype(wide)


def safe_logdet(kernel: Array) -> Array:
    """log |det K|, and 0 for a singular K (the reference's ``safe_hooklogdet``).

    K (agreement counts) is finite by construction, so a non-finite log-determinant can
    only come from a singular K: the CPU's LU reports sign 0, CUDA's was measured to
    return NaN (one NB201 network in 1000 on an H200). Both count as singular.
    """
    sign, logdet = linalg.slogdet(kernel)
    singular = (sign == 0) | ~jnp.isfinite(logdet)
    return jnp.where(singular, jnp.zeros_like(logdet), logdet)


def naswot(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """log|det K|, K summed over every ReLU of the network (their inputs' codes).

    A tensor read by several ReLU modules of the reference network (a cell node feeding
    several conv ops) counts once per ReLU. With ``naswot_wrapper_hooks`` (the
    default) it also counts once per wrapper module whose class name contains "ReLU"
    (NB201's ``ReLUConvBN``): the original NASWOT code and alethiometer select modules by
    ``'ReLU' in str(type(module))``, so on NB201 every conv op's ReLU input counts twice.
    Measured against alethiometer 1.1.2 on NB201, counting ReLUs only deviates by 7-8%.
    """
    kernel = 0.0
    wrappers = inputs.options["naswot_wrapper_hooks"]
    for relu_inputs, relu_modules, wrapper_modules in sown_values(
            passes["activations"]["relu"]):
        counts = relu_modules + wrapper_modules if wrappers else relu_modules
        site_shape = counts.shape  # leading axes of stacked sites
        per_site = relu_inputs.reshape((-1,) + relu_inputs.shape[len(site_shape):])
        kernels = jax.vmap(lambda site: binary_code_kernel(site, inputs.wide))(per_site)
        kernel = kernel + jnp.tensordot(counts.reshape(-1).astype(kernels.dtype), kernels, 1)
    return scalar(inputs, safe_logdet(kernel))


def layer_logdets(inputs: ProxyInputs, passes: Mapping[str, Any]) -> Array:
    """Per layer log|det K_l| of the codes of its output (before BN), (L,).

    Layers sharing an output (the candidate convs of one edge, at most one active) share
    the computation; inactive layers are masked later by the caller.
    """
    kernels, slot_of_layer = _distinct_kernels(inputs, passes)
    # One stack for all of them, which zcjax.linalg runs as one LU per matrix.
    return safe_logdet(jnp.stack(kernels))[slot_of_layer]


def layer_kernels(inputs: ProxyInputs, passes: Mapping[str, Any]) -> list[Array]:
    """Per layer the binary-code kernel of its output (before BN), aligned with the table."""
    kernels, slot_of_layer = _distinct_kernels(inputs, passes)
    return [kernels[slot] for slot in slot_of_layer]


def _distinct_kernels(inputs: ProxyInputs, passes: Mapping[str, Any]):
    """The kernel of every distinct layer output, and per layer the index of its own."""
    intermediates = passes["activations"]["intermediates"]
    slots, kernels, slot_of_layer = {}, [], []
    for layer in inputs.network.layers:
        slot = (layer.output_path, layer.output_index)
        if slot not in slots:
            output = get_path(intermediates, layer.output_path)[0][layer.output_index]
            slots[slot] = len(kernels)
            kernels.append(binary_code_kernel(output, inputs.wide))
        slot_of_layer.append(slots[slot])
    return kernels, np.asarray(slot_of_layer)


def lnwot(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Layer-wise NASWOT: sum over layers of log|det K_l|, K_l from the codes of each
    Conv/Linear output before BN and ReLU; a singular K_l contributes 0.

    Reference: Xiang et al., AutoML-Conf 2023 (alethiometer's ``lnwot``).
    """
    return layer_sum(inputs, layer_logdets(inputs, passes))


def nwot(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """log|det K|, K summed over the codes of every active Conv/Linear output (before BN).

    alethiometer's ``nwot``: lnwot's hook with all layers summed into one kernel.
    """
    active = inputs.active
    kernels = layer_kernels(inputs, passes)
    kernel = sum(jnp.where(used, k, jnp.zeros_like(k)) for used, k in zip(active, kernels))
    return scalar(inputs, safe_logdet(kernel))
