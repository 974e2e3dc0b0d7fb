"""zcjax's tnb101_micro network against an independent PyTorch TransNAS-Bench-101 network
(``torch_tnb101.py``, written from the benchmark's definition) on identical weights.

A small network of the benchmark's form (C = 8, layers "4134", two cells per layer, 32x32
inputs, 10 classes) and six architectures, degenerate ones included. Layer type 2 (more
channels, same resolution) is left out: the benchmark's networks never use it, and its
``Zero`` op would give the wrong shape there ((H + 1) // 1 rows); zcjax's zeros have the
output's shape.

* float64 on both sides: logits, mean cross-entropy and the gradient of every parameter of
  the torch model (its chosen ops) to 1e-9 of the largest magnitude;
* float32, zcjax's scorer against alethiometer's grad_norm, snip, synflow and nwot_relu
  and the PyTorch re-derivations of fisher, plain and l2_norm of
  ``test_alethiometer_parity`` (the same reference code as the NB201 suite), per layer
  where the proxy has layers, to the NB201 suite's tolerances (plain, a signed sum, relative
  to the L1 norm of its terms);
* jacob_cov is round-off on this network (its batched input Jacobian is zero on both
  sides, which is checked instead).

Where zcjax's network differs from the benchmark's on purpose (PyTorch-default init instead
of Kaiming fan-out, zen without the FactorizedReduce BatchNorms) nothing here depends on it:
the weights are copied and zen is not compared.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import to_torch, torch  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import zcjax  # noqa: E402
from zcjax import api  # noqa: E402
from zcjax.spaces import tnb101_micro  # noqa: E402

import space_parity  # noqa: E402
import torch_tnb101  # noqa: E402

CONFIG = tnb101_micro.Config(base_channels=8, macro="4134", cells_per_layer=2,
                             num_classes=10, image_size=32)
ARCHS = (
    "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|",
    # Degenerate: the output reads node 2 only through a skip, node 1 feeds nothing used.
    "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|",
    # Every edge none: a constant network (zero gradients but the head's).
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
)
PROXIES = ("grad_norm", "snip", "synflow", "naswot", "fisher", "plain", "l2_norm")
# jacob_cov is left out: see test_the_batched_input_jacobian_is_zero_so_jacob_cov_is_round_off.
PER_LAYER = ("grad_norm", "snip", "fisher", "plain", "l2_norm")


@pytest.fixture(scope="module")
def batch():
    images, labels = zcjax.data.sample_batch("cifar10", 8)
    return np.asarray(images), np.asarray(labels)


@pytest.fixture(scope="module")
def variables(batch):
    """The scorer's own initial weights for key 0 (PyTorch-default distributions)."""
    network = tnb101_micro.network(CONFIG)
    return jax.device_get(jax.jit(network.init)(api.init_key(jax.random.key(0)),
                                                jnp.asarray(batch[0][:1])))


def torch_model(arch, params, dtype=torch.float32):
    model = torch_tnb101.MacroNet(arch, CONFIG.base_channels, CONFIG.macro,
                                  CONFIG.cells_per_layer, CONFIG.num_classes)
    return torch_tnb101.load_zcjax_params(model.to(dtype), params).train()


@functools.cache
def _loss_and_grads():
    return space_parity.loss_and_gradients(tnb101_micro.network(CONFIG))


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_loss_and_gradients_equal_the_benchmark_network_in_float64(
        arch, variables, batch):
    # A cell of zeros builds new tensors: the parameters before it get no torch gradient.
    space_parity.assert_float64_equal(
        _loss_and_grads(), lambda params, dtype: torch_model(arch, params, dtype), variables,
        tnb101_micro.encode(arch), batch, missing_grad_is_zero=True)


@pytest.fixture(scope="module")
def scorer():
    return zcjax.make_scorer("tnb101_micro", PROXIES, config=CONFIG, per_layer=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_proxies_equal_the_reference_code_on_the_benchmark_network(
        arch, scorer, variables, batch):
    model = torch_model(arch, variables["params"])
    ours = scorer(tnb101_micro.encode(arch), batch, jax.random.key(0))
    space_parity.assert_classic_proxies_equal(ours, model, batch, PROXIES, PER_LAYER)


@functools.cache
def _input_jacobians():
    """d(sum of all logits)/d images, and d(sum of image 0's logits)/d images."""
    network = tnb101_micro.network(CONFIG)

    def jacobians(params, genotype, images):
        logits = lambda x: network.apply({"params": params}, genotype, x)  # noqa: E731
        return (jax.grad(lambda x: logits(x).sum())(images),
                jax.grad(lambda x: logits(x)[0].sum())(images))

    return jax.jit(jacobians)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_batched_input_jacobian_is_zero_so_jacob_cov_is_round_off(arch, variables, batch):
    """foresight's jacob_cov differentiates the sum of all logits over the batch. Here the
    head reads a sum of train-mode BatchNorm outputs, whose batch mean is the constant
    shift: that sum does not depend on the input, on either side, so its Jacobian is
    round-off (~1e-15) and jacob_cov's correlation matrix holds noise (zcjax's and the
    reference's float64 values differ by up to 1.3e-2). It is not compared here."""
    images, _ = batch
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), variables["params"])
        genotype = jnp.asarray(tnb101_micro.encode(arch))
        ours, single = _input_jacobians()(params, genotype, jnp.asarray(images, jnp.float64))
    x, _ = to_torch(batch)
    model = torch_model(arch, jax.device_get(params), torch.float64)
    inputs = x.double().requires_grad_(True)
    _, logits = model(inputs)
    if logits.requires_grad:  # a cell of zeros cuts the input off
        logits.sum().backward()
    theirs = inputs.grad.numpy() if inputs.grad is not None else np.zeros(inputs.shape)
    assert np.max(np.abs(ours)) < 1e-12 and np.max(np.abs(theirs)) < 1e-12
    if "nor_conv" in arch:  # one image's logit sum does depend on its input
        assert np.max(np.abs(single)) > 1e-6
