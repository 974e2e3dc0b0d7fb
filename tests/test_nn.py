"""Building blocks: the canonical-layout convolution VJPs, pooling, batch norm, init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zcjax import initialisation, nn


@pytest.mark.parametrize("kernel_size,stride,padding,size", [
    (3, 1, 1, 8), (1, 1, 0, 8), (3, 2, 1, 8), (3, 2, 1, 7), (1, 2, 0, 9), (5, 1, 2, 6),
])
def test_conv_custom_vjp_matches_autodiff_to_second_order(kernel_size, stride, padding, size):
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (2, size, size, 3), jnp.float32)
    w = jax.random.normal(kw, (kernel_size, kernel_size, 3, 4), jnp.float32)

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, stride, padding)))

    custom, plain = loss(nn.conv2d), loss(nn.conv2d_reference)
    np.testing.assert_allclose(custom(x, w), plain(x, w), rtol=1e-6)
    for got, want in zip(jax.grad(custom, (0, 1))(x, w), jax.grad(plain, (0, 1))(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Reverse over reverse (GraSP's Hessian-gradient product).
    direction = jax.random.normal(kg, w.shape, jnp.float32)

    def hvp(f):
        return jax.grad(lambda x, w: jnp.vdot(jax.grad(f, 1)(x, w), direction), (0, 1))(x, w)

    for got, want in zip(hvp(custom), hvp(plain)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_avg_pool_excludes_padding_from_the_divisor():
    x = jax.random.normal(jax.random.key(1), (1, 5, 4, 2), jnp.float32)
    got = np.asarray(nn.avg_pool(x, 3, 1, 1))
    padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
    ones = np.pad(np.ones((1, 5, 4, 1)), ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros_like(got)
    for i in range(5):
        for j in range(4):
            window = padded[:, i:i + 3, j:j + 3]
            want[:, i, j] = window.sum((1, 2)) / ones[:, i:i + 3, j:j + 3].sum((1, 2))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_avg_pool_keeps_float64_under_x64():
    with jax.enable_x64(True):
        x = jnp.ones((1, 4, 4, 1), jnp.float32)
        assert nn.avg_pool(x, 3, 1, 1).dtype == jnp.float32
        assert nn.avg_pool(x.astype(jnp.float64), 2, 2).dtype == jnp.float64


def test_batch_norm_modes():
    x = jax.random.normal(jax.random.key(2), (4, 3, 3, 2), jnp.float32) * 3 + 1
    scale, bias = jnp.array([2.0, 0.5]), jnp.array([0.1, -1.0])
    y = nn.batch_norm(x, scale, bias, "batch")
    normalised = (y - bias) / scale
    np.testing.assert_allclose(normalised.mean((0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.var((0, 1, 2)), 1, atol=1e-3)  # eps = 1e-5
    np.testing.assert_allclose(nn.batch_norm(x, scale, bias, "init"),
                               x / np.sqrt(1 + 1e-5) * scale + bias, rtol=1e-6)
    assert nn.batch_norm(x, scale, bias, "off") is x
    with pytest.raises(ValueError, match="batch-norm mode"):
        nn.batch_norm(x, scale, bias, "train")


@pytest.mark.parametrize("init_draw", initialisation.INIT_DRAWS)
def test_torch_default_init_bounds(init_draw):
    def init(module, key):
        return initialisation.init_variables(module.init, key, init_draw)["params"]["kernel"]

    boxed = nn.ConvParams(8, 4, 3).init(jax.random.key(3))["params"]["kernel"]
    bound = 1 / np.sqrt(8 * 9)
    assert (boxed.low, boxed.high) == (-bound, bound)  # the interval "one" draws on
    kernel = init(nn.ConvParams(8, 4, 3), jax.random.key(3))
    assert kernel.shape == (3, 3, 8, 4)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
    stacked = init(nn.ConvParams(8, 4, 3, stack=5), jax.random.key(3))
    assert stacked.shape == (5, 3, 3, 8, 4) and np.abs(stacked).max() <= bound
    assert not np.allclose(stacked[0], stacked[1])  # cells are initialised independently
