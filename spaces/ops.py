"""Candidate-op building blocks shared by the cell search spaces (pure functions, NHWC).

Written to sit inside ``lax.switch`` branches under custom VJPs: no convolution here
has a non-canonical autodiff backward (the slow XLA:CPU path, see DESIGN.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def factorized_shift(x: Array) -> Array:
    """FactorizedReduce's second path: the input shifted by one pixel, zero-padded.

    PyTorch's ``pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]`` (TransNAS-Bench-101); DARTS writes
    ``x[:, :, 1:, 1:]`` without the pad, which gives the same strided 1x1 conv output
    for even sizes and is undefined (mismatched halves) for odd ones.
    """
    return jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :]


def factorized_reduce_halves(conv, x: Array, kernel_a: Array, kernel_b: Array,
                             stride: int) -> Array:
    """FactorizedReduce's two 1x1 conv outputs, stacked (2, N, H', W', C_out/2).

    ``x`` is the already ReLU'd input; the op's output is BN(concat(halves)).
    """
    return jnp.stack([conv(x, kernel_a, stride, 0), conv(factorized_shift(x), kernel_b, stride, 0)])


def depthwise_conv2d(x: Array, kernel: Array, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> Array:
    """Depthwise 2-D cross-correlation as a sum of k^2 shifted, strided slices.

    Elementwise ops only, so the backward pass is plain slicing and padding (no grouped
    convolution with a non-canonical backward inside ``lax.switch``); the FLOPs are the
    convolution's.

    Args:
      x: (N, H, W, C) input.
      kernel: (k, k, 1, C) weights (PyTorch's (C, 1, k, k) with groups=C, as HWIO).
      stride, padding, dilation: as ``torch.nn.Conv2d``.

    Returns:
      (N, H_out, W_out, C).
    """
    size = kernel.shape[0]
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    span = dilation * (size - 1) + 1
    out_h = (padded.shape[1] - span) // stride + 1
    out_w = (padded.shape[2] - span) // stride + 1
    total = None
    for dy in range(size):
        for dx in range(size):
            start = (0, dy * dilation, dx * dilation, 0)
            limit = (x.shape[0], start[1] + (out_h - 1) * stride + 1,
                     start[2] + (out_w - 1) * stride + 1, x.shape[3])
            term = jax.lax.slice(padded, start, limit, (1, stride, stride, 1)) * kernel[dy, dx, 0]
            total = term if total is None else total + term
    return total


def depthwise_conv2d_reference(x: Array, kernel: Array, stride: int = 1, padding: int = 0,
                               dilation: int = 1) -> Array:
    """The same as :func:`depthwise_conv2d` with XLA's grouped convolution (stock autodiff)."""
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), [(padding, padding)] * 2, rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])


def max_pool(x: Array, size: int, stride: int, padding: int) -> Array:
    """MaxPool2d: windows padded with -inf (padding never wins), dtype-preserving."""
    return jax.lax.reduce_window(
        x, np.array(-np.inf, x.dtype), jax.lax.max, (1, size, size, 1), (1, stride, stride, 1),
        ((0, 0), (padding, padding), (padding, padding), (0, 0)))
