"""AZ-NAS's three training-free components: expressivity, progressivity, trainability.

All three read one pass (:func:`az_features`): one forward of the network, re-initialised
Kaiming-normal (``sota_init``) with BatchNorm on batch statistics, on a standard-normal
batch (``az_inputs``), capturing the feature map of every block of
:attr:`zcjax.network.Network.blocks` (the stem's output, then every cell's, reduction
blocks included: NB201's 1 + 17 maps), and one backward that gives every block's
input-gradient at once: the blocks read their inputs through ``stop_gradient``
(``isolate_blocks``), so the backward of ``sum_k <g_k, F_k>`` is, at block k's input, the
VJP of block k alone at ``g_k``.

The fourth component, complexity, is the ``flops`` proxy. AZ-NAS proper is a ranking of a
SET of architectures (the sum over the four of log(rank / N)), not a per-network score:
:func:`zcjax.aggregate.az_nas_rank` computes it from the four columns.

Deviations from the reference, both numerical: the covariances, their eigenvalues and the
gradient products are computed in float64 (``ProxyInputs.wide``; the reference's float32
eigenvalues of a near-singular covariance can be negative enough to make ``log(p + 1e-8)``
NaN); and a NaN is kept as NaN (ranked last by zcjax's metrics), where the reference
turns it into -inf (also last).

References:
  Lee and Ham, "AZ-NAS: Assembling Zero-Cost Proxies for Network Architecture Search",
  CVPR 2024 (its NB201 ``compute_az_nas_score.py`` is what tests/parity holds this to).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from zcjax import linalg
from zcjax.network import block_vjp
from zcjax.proxies import reinit
from zcjax.proxies.base import Pass, ProxyInputs, ProxyOutput, scalar
from zcjax.proxies.options import Option

Array = jax.Array
_AZ_STREAM = 11  # fold_in of the noise key: independent of zen's and TE-NAS's draws
_ENTROPY_EPS = 1e-8
_SINGULAR_EPS = 1e-6

AZ_INPUTS = Option(
    "az_inputs", "gaussian", choices=("gaussian", "batch"),
    doc='what AZ-NAS\'s components see: ``"gaussian"`` (default) a standard-normal batch of '
        "the minibatch's shape drawn from the key, as the authors' NB201 evaluation "
        '(``trainloader=None``); ``"batch"`` the minibatch itself.')


class AZFeatures(NamedTuple):
    """What the three components read.

    Attributes:
      features: every block's output (N, H, W, C), the stem's first.
      output_grads: per block after the stem, the random +-1 cotangent g_k of its output.
      input_grads: per block after the stem, the VJP of that block alone at g_k: the
        gradient at its input (the previous block's output).
    """

    features: list[Array]
    output_grads: list[Array]
    input_grads: list[Array]


def az_draws(inputs: ProxyInputs) -> tuple[Mapping[str, Any], Array, Array]:
    """AZ-NAS's random draws from the key: the variables (``sota_init``), the images
    (``az_inputs``) and the key of the +-1 output cotangents."""
    weights_key, images_key, signs_key = jax.random.split(
        jax.random.fold_in(inputs.key, _AZ_STREAM), 3)
    images = inputs.images
    if inputs.options["az_inputs"] == "gaussian":
        images = jax.random.normal(images_key, images.shape, images.dtype)
    return reinit.sota_variables(inputs, weights_key), images, signs_key


def az_features(inputs: ProxyInputs, computed=None) -> AZFeatures:
    """One forward and one backward: the block features and per-block input-gradients."""
    variables, images, signs_key = az_draws(inputs)
    outputs, pullback = block_vjp(inputs.network, variables, inputs.genotype, images)
    keys = jax.random.split(signs_key, len(outputs))
    cotangents = [jnp.zeros_like(outputs[0])] + [
        jax.random.rademacher(key, output.shape, output.dtype)
        for key, output in zip(keys[1:], outputs[1:])]
    return AZFeatures(outputs, cotangents[1:], pullback(cotangents)[1:])


def _entropy(feature: Array, wide) -> Array:
    """The entropy of the normalised eigenvalues of the positions' channel covariance."""
    rows = feature.reshape(-1, feature.shape[-1]).astype(wide)
    rows = rows - jnp.mean(rows, axis=0, keepdims=True)
    covariance = rows.T @ rows / rows.shape[0]
    eigenvalues = linalg.eigvalsh(covariance)
    p = eigenvalues / jnp.sum(eigenvalues)
    return jnp.sum(-p * jnp.log(p + _ENTROPY_EPS))


def block_entropies(inputs: ProxyInputs, passes: Mapping[str, Any]) -> Array:
    """(K + 1,) expressivity per feature map, the stem's first."""
    return jnp.stack([_entropy(f, inputs.wide) for f in passes["az_features"].features])


def az_expressivity(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """The sum over feature maps of the entropy of their covariance spectrum."""
    return scalar(inputs, jnp.sum(block_entropies(inputs, passes)))


def az_progressivity(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """The smallest increase of expressivity from one feature map to the next."""
    entropies = block_entropies(inputs, passes)
    return scalar(inputs, jnp.min(entropies[1:] - entropies[:-1]))


def _unshuffle(grad: Array, height: int) -> Array:
    """PixelUnshuffle to ``height``: each s x s patch's pixels become channels (their
    order does not matter: it permutes the rows of the matrix whose norm is taken)."""
    n, h, w, c = grad.shape
    stride = h // height
    if stride * height != h or w % stride:
        raise ValueError(f"AZ-NAS trainability: a block maps {h}x{w} to {height}x"
                         f"{w // max(stride, 1)}, not an integer stride")
    grad = grad.reshape(n, h // stride, stride, w // stride, stride, c)
    return grad.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // stride, w // stride,
                                                    stride * stride * c)


def _block_trainability(g_in: Array, g_out: Array, wide) -> Array:
    """-s - 1/(s + 1e-6) + 2, s the spectral norm of g_in^T g_out / positions; -inf when
    the block is the identity (g_in equals g_out)."""
    same = jnp.all(g_in == g_out) if g_in.shape == g_out.shape else jnp.asarray(False)
    if g_in.shape[1:3] != g_out.shape[1:3]:
        g_in = _unshuffle(g_in, g_out.shape[1])
    rows_in = g_in.reshape(-1, g_in.shape[-1]).astype(wide)
    rows_out = g_out.reshape(-1, g_out.shape[-1]).astype(wide)
    matrix = rows_in.T @ rows_out / rows_out.shape[0]
    largest = linalg.svdvals(matrix)[0]
    value = -largest - 1 / (largest + _SINGULAR_EPS) + 2
    return jnp.where(same, -jnp.inf, value)


def block_trainabilities(inputs: ProxyInputs, passes: Mapping[str, Any]) -> Array:
    """(K,) trainability of every block after the stem, in forward order."""
    features = passes["az_features"]
    return jnp.stack([_block_trainability(g_in, g_out, inputs.wide)
                      for g_in, g_out in zip(features.input_grads, features.output_grads)])


def az_trainability(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """The mean over blocks of how close the spectral norm of each block's Jacobian
    (probed with random signs) is to 1."""
    return scalar(inputs, jnp.mean(block_trainabilities(inputs, passes)))


FEATURES_PASS = Pass("az_features", az_features, options=(reinit.SOTA_INIT, AZ_INPUTS))
