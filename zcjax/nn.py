"""Building blocks shared by the search spaces.

Everything here is a pure function of arrays (plus static configuration) so that a
search space can call it inside ``jax.lax.switch`` branches and custom VJPs. Layouts
are NHWC for activations and HWIO for convolution kernels throughout.

The convolution carries a custom VJP whose input- and weight-gradients are themselves
canonical NHWC x HWIO convolutions: XLA:CPU runs the autodiff-generated backward
convolutions (non-canonical dimension labels) through a slow fallback when they sit
inside a conditional (6.9 ms -> 381 ms for one 3x3 conv fwd+bwd, see DESIGN.md).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from zcjax import initialisation

Array = jax.Array
BatchNormMode = Literal["batch", "init", "off"]
BATCH_NORM_MODES = ("batch", "init", "off")
BATCH_NORM_EPS = 1e-5  # PyTorch's default
_NHWC = ("NHWC", "HWIO", "NHWC")


# ---------------------------------------------------------------------------
# PyTorch-default initialisation
# ---------------------------------------------------------------------------
# torch.nn.Conv2d / Linear: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
# Flax's draw of it stays the "per_array" one; the box records the interval for "one".
def _fan_in_bound(shape: tuple[int, ...]) -> tuple[float, float]:
    bound = 1.0 / math.sqrt(int(np.prod(shape[:-1])))
    return -bound, bound


torch_default_kernel_init = initialisation.boxed(
    linen.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), _fan_in_bound)


def torch_default_bias_init(fan_in: int):
    """Bias init of torch Conv2d/Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return initialisation.uniform(-bound, bound)


# ---------------------------------------------------------------------------
# Convolution with a canonical-layout backward pass
# ---------------------------------------------------------------------------
def conv2d_reference(x: Array, kernel: Array, stride: int = 1, padding: int = 0) -> Array:
    """Plain ``lax.conv_general_dilated`` (autodiff backward). The per-architecture path."""
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), [(padding, padding)] * 2, dimension_numbers=_NHWC
    )


def _input_grad_raw(grad_out, kernel, spatial, stride, padding):
    """Full correlation of the (stride-dilated) output gradient with the flipped kernel."""
    kh, kw = kernel.shape[:2]
    (height, width), (out_h, out_w) = spatial, grad_out.shape[1:3]
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    padding_hw = [
        (kh - 1 - padding, height + padding - 1 - (out_h - 1) * stride),
        (kw - 1 - padding, width + padding - 1 - (out_w - 1) * stride),
    ]
    return jax.lax.conv_general_dilated(
        grad_out, flipped, (1, 1), padding_hw, lhs_dilation=(stride, stride),
        dimension_numbers=_NHWC,
    )


def _weight_grad_raw(x, grad_out, kernel_hw, stride, padding):
    """Channels as the batch, the batch as features: x^T (C_in, H, W, N) correlated with
    g^T (H_out, W_out, N, C_out) is again a canonical NHWC x HWIO convolution."""
    kh, kw = kernel_hw
    (height, width), (out_h, out_w) = x.shape[1:3], grad_out.shape[1:3]
    padding_hw = [
        (padding, (out_h - 1) * stride + kh - height - padding),
        (padding, (out_w - 1) * stride + kw - width - padding),
    ]
    grad = jax.lax.conv_general_dilated(
        x.transpose(3, 1, 2, 0), grad_out.transpose(1, 2, 0, 3), (1, 1), padding_hw,
        rhs_dilation=(stride, stride), dimension_numbers=_NHWC,
    )
    return grad.transpose(1, 2, 0, 3)


# The three functions below are each other's VJPs, so derivatives of any order (GraSP's
# Hessian-gradient product is reverse over reverse) stay canonical convolutions.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: Array, kernel: Array, stride: int = 1, padding: int = 0) -> Array:
    """2-D cross-correlation, NHWC x HWIO -> NHWC, symmetric zero padding.

    Numerically the same as :func:`conv2d_reference`; only the derivatives differ in how
    they are written (see the module docstring).

    Args:
      x: (N, H, W, C_in) input.
      kernel: (kh, kw, C_in, C_out) weights.
      stride: spatial stride.
      padding: zero padding on every side.

    Returns:
      (N, H_out, W_out, C_out) output.
    """
    return conv2d_reference(x, kernel, stride, padding)


# Each forward rule calls its own custom-VJP function, not the raw convolution: when the
# rule itself is differentiated (reverse over reverse), the raw convolution would get
# stock autodiff and its slow non-canonical backward.
def _conv2d_fwd(x, kernel, stride, padding):
    return conv2d(x, kernel, stride, padding), (x, kernel)


def _conv2d_bwd(stride, padding, residuals, grad_out):
    x, kernel = residuals
    return (
        conv2d_input_grad(grad_out, kernel, x.shape[1:3], stride, padding),
        conv2d_weight_grad(x, grad_out, kernel.shape[:2], stride, padding),
    )


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_input_grad(grad_out, kernel, spatial, stride, padding):
    """d conv2d(x, kernel) / dx, applied to ``grad_out``; ``spatial`` = x's (H, W)."""
    return _input_grad_raw(grad_out, kernel, spatial, stride, padding)


def _input_grad_fwd(grad_out, kernel, spatial, stride, padding):
    return conv2d_input_grad(grad_out, kernel, spatial, stride, padding), (grad_out, kernel)


def _input_grad_bwd(spatial, stride, padding, residuals, cotangent):
    grad_out, kernel = residuals
    return (
        conv2d(cotangent, kernel, stride, padding),
        conv2d_weight_grad(cotangent, grad_out, kernel.shape[:2], stride, padding),
    )


conv2d_input_grad.defvjp(_input_grad_fwd, _input_grad_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_weight_grad(x, grad_out, kernel_hw, stride, padding):
    """d conv2d(x, kernel) / dkernel, applied to ``grad_out``."""
    return _weight_grad_raw(x, grad_out, kernel_hw, stride, padding)


def _weight_grad_fwd(x, grad_out, kernel_hw, stride, padding):
    return conv2d_weight_grad(x, grad_out, kernel_hw, stride, padding), (x, grad_out)


def _weight_grad_bwd(kernel_hw, stride, padding, residuals, cotangent):
    x, grad_out = residuals
    return (
        conv2d_input_grad(grad_out, cotangent, x.shape[1:3], stride, padding),
        conv2d(x, cotangent, stride, padding),
    )


conv2d_weight_grad.defvjp(_weight_grad_fwd, _weight_grad_bwd)


# ---------------------------------------------------------------------------
# Stateless batch norm, pooling
# ---------------------------------------------------------------------------
def batch_norm(x: Array, scale: Array, bias: Array, mode: BatchNormMode = "batch") -> Array:
    """BatchNorm2d without running state.

    Args:
      x: (N, H, W, C) input.
      scale, bias: (C,) affine parameters.
      mode: ``"batch"`` normalises with the batch statistics (PyTorch train mode, biased
        variance); ``"init"`` uses the running statistics of a freshly built PyTorch
        module (mean 0, variance 1: eval mode at initialisation); ``"off"`` removes the
        layer (identity), as synflow does.
    """
    if mode == "off":
        return x
    if mode == "init":
        return x * (scale / jnp.sqrt(jnp.asarray(1.0 + BATCH_NORM_EPS, x.dtype))) + bias
    if mode != "batch":
        raise ValueError(f"unknown batch-norm mode {mode!r}; expected one of {BATCH_NORM_MODES}")
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    return (x - mean) * jax.lax.rsqrt(var + jnp.asarray(BATCH_NORM_EPS, x.dtype)) * scale + bias


def batch_variance(x: Array) -> Array:
    """Unbiased per-channel variance of (N, H, W, C): what PyTorch feeds its running_var."""
    count = x.shape[0] * x.shape[1] * x.shape[2]
    return jnp.var(x, axis=(0, 1, 2)) * (count / max(count - 1, 1))


def _window_sum(x: Array, size: int, stride: int, padding: int) -> Array:
    return jax.lax.reduce_window(
        x,
        np.zeros((), x.dtype),  # a concrete zero makes this a differentiable window sum
        jax.lax.add,
        (1, size, size, 1),
        (1, stride, stride, 1),
        ((0, 0), (padding, padding), (padding, padding), (0, 0)),
    )


def _valid_window_counts(length: int, size: int, stride: int, padding: int) -> np.ndarray:
    """How many real (non-padding) positions each 1-D pooling window covers."""
    starts = np.arange(0, length + 2 * padding - size + 1, stride) - padding
    return np.minimum(starts + size, length) - np.maximum(starts, 0)


def avg_pool(x: Array, size: int, stride: int, padding: int = 0) -> Array:
    """AvgPool2d with ``count_include_pad=False``, dtype-preserving.

    The divisor (number of real pixels under each window) depends only on the shape, so
    it is computed with NumPy at trace time; Flax's pooling upcasts under x64.
    """
    rows = _valid_window_counts(x.shape[1], size, stride, padding)
    cols = _valid_window_counts(x.shape[2], size, stride, padding)
    counts = (rows[:, None] * cols[None, :])[None, :, :, None]
    return _window_sum(x, size, stride, padding) / jnp.asarray(counts, x.dtype)


def global_avg_pool(x: Array) -> Array:
    """(N, H, W, C) -> (N, C)."""
    return jnp.mean(x, axis=(1, 2))


# ---------------------------------------------------------------------------
# Flax parameter holders (PyTorch-default init)
# ---------------------------------------------------------------------------
def stacked(init, count: int | None):
    """``init`` for a stack of ``count`` independently initialised copies (axis 0)."""
    if count is None:
        return init

    def init_stack(key, shape, dtype=jnp.float32):
        return jax.vmap(lambda k: init(k, shape[1:], dtype))(jax.random.split(key, shape[0]))

    return init_stack


def _stack_shape(count: int | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape if count is None else (count,) + shape


class ConvParams(linen.Module):
    """Holds one bias-free Conv2d kernel (HWIO) with PyTorch's default init.

    With ``stack``, holds that many independently initialised kernels on a leading axis
    (the cells of a stage, scanned over).
    """

    in_channels: int
    out_channels: int
    kernel_size: int
    stack: int | None = None

    @linen.compact
    def __call__(self) -> Array:
        shape = (self.kernel_size, self.kernel_size, self.in_channels, self.out_channels)
        return self.param("kernel", stacked(torch_default_kernel_init, self.stack),
                          _stack_shape(self.stack, shape), jnp.float32)


class BatchNormParams(linen.Module):
    """Holds the affine parameters of a BatchNorm2d (scale 1, bias 0), optionally stacked."""

    channels: int
    stack: int | None = None

    @linen.compact
    def __call__(self) -> tuple[Array, Array]:
        shape = _stack_shape(self.stack, (self.channels,))
        scale = self.param("scale", initialisation.constant(1.0), shape, jnp.float32)
        bias = self.param("bias", initialisation.constant(0.0), shape, jnp.float32)
        return scale, bias


class Dense(linen.Module):
    """torch.nn.Linear with its default init; the kernel is (in, out)."""

    features: int

    @linen.compact
    def __call__(self, x: Array) -> Array:
        fan_in = x.shape[-1]
        kernel = self.param(
            "kernel", torch_default_kernel_init, (fan_in, self.features), jnp.float32
        )
        bias = self.param("bias", torch_default_bias_init(fan_in), (self.features,), jnp.float32)
        return x @ kernel.astype(x.dtype) + bias.astype(x.dtype)
