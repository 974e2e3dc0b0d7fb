"""MeCo's per-layer term on zcjax's layer table: the minimum eigenvalue of each layer's
channel correlation on one sample.

This is the short form of MeCo over the Conv/Linear outputs of :attr:`Network.layers`
(pre-BatchNorm, as the ``activations`` pass captures them), on the first image of the
batch. The authors' reference hooks every module (containers and the logits too) and feeds
one 64x64 Gaussian image; that variant, with parity against their code, is MeCo proper.

References:
  Jiang et al., "MeCo: Zero-Shot NAS with One Data and Single Forward Pass via Minimum
  Eigenvalue of Correlation", NeurIPS 2023.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from zcjax.network import layer_outputs
from zcjax.proxies.base import ProxyInputs, ProxyOutput, layer_sum

Array = jax.Array


def channel_correlation(feature: Array, wide) -> Array:
    """The C x C Pearson correlation of one sample's channels (positions as observations),
    with the NaN of a constant channel set to 0 as the reference does. A one-channel layer
    (NB101 splits a cell's channels among its vertices) is the 1 x 1 matrix [[1]]."""
    channels = feature.reshape(-1, feature.shape[-1]).T.astype(wide)
    correlation = jnp.atleast_2d(jnp.corrcoef(channels))  # corrcoef of one row is a scalar
    return jnp.where(jnp.isfinite(correlation), correlation, jnp.zeros_like(correlation))


def meco_layers(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Sum over active layers of the minimum eigenvalue of their channel correlation."""
    outputs = layer_outputs(inputs.network, passes["activations"]["intermediates"])
    matrices = [channel_correlation(output[0], inputs.wide) for output in outputs]
    # One batched eigvalsh per matrix size: hundreds of separate LAPACK calls, which
    # XLA:CPU runs concurrently, are what once hung lnwot (bench/RESULTS.md).
    minimum = [None] * len(matrices)
    for size in sorted({m.shape[0] for m in matrices}):
        members = [i for i, m in enumerate(matrices) if m.shape[0] == size]
        eigenvalues = jnp.linalg.eigvalsh(jnp.stack([matrices[i] for i in members]))
        for row, index in enumerate(members):
            minimum[index] = eigenvalues[row, 0]
    return layer_sum(inputs, jnp.stack(minimum))
