"""zcjax's darts network against an independent PyTorch DARTS / NAS-Bench-301 network
(``torch_darts.py``, written from the DARTS paper's ``NetworkCIFAR``) on identical weights.

A small network of the benchmark's form (C = 4, three cells: normal, reduce, reduce after
reduce, so both preprocessings; 16x16 inputs, 10 classes), 8 real images, five
architectures: the conformance suite's three (every op in both cell types, reduce-cell skips
from a cell input and from a node), every slot a skip, and every slot a pool.

* float64 on both sides: logits, mean cross-entropy and the gradient of every parameter of
  the torch model (its chosen ops) to 1e-9 of the largest magnitude, on DARTS' evaluation
  ops (the default) and on the graph NASLib scored NAS-Bench-Suite-Zero with
  (``NASLIB_ZERO_COST``: non-affine cell-op BatchNorms, a BatchNorm after every pool);
* float32, zcjax's scorer against alethiometer's grad_norm, snip, grasp, synflow and
  nwot_relu and the PyTorch re-derivations of fisher, jacob_cov, plain and l2_norm of
  ``test_alethiometer_parity`` (the same reference code as the NB201 suite), per layer where
  the proxy has layers, to the NB201 suite's tolerances (grasp and plain, signed sums,
  relative to the L1 norm of their terms); on the all-skip network jacob_cov is round-off
  (its batched input Jacobian is zero on both sides, which is checked instead).

Where zcjax's network differs from DARTS' on purpose (PyTorch-default init, FactorizedReduce
padding its shifted path, zen without the genotype-dependent BatchNorms) nothing here
depends on it: the weights are copied, the sizes are even (where the padded and the
sliced shift agree) and zen is not compared.
"""

from __future__ import annotations

import ast
import dataclasses
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
from zcjax.spaces import darts  # noqa: E402

import space_parity  # noqa: E402
import torch_darts  # noqa: E402
from test_space_conformance import FIXTURES  # noqa: E402

CONFIG = darts.Config(channels=4, layers=3, num_classes=10, image_size=16)
NASLIB = dataclasses.replace(CONFIG, affine=darts.NASLIB_ZERO_COST.affine,
                             pool_bn=darts.NASLIB_ZERO_COST.pool_bn)


def _cells(*ops: str) -> str:
    """Both cells with slot i's op ``ops[i % len(ops)]``, node j reading c_{k-1} and node
    j - 1 (node 0: c_{k-2})."""
    codes = [torch_darts.OPS.index(op) for op in ops]
    sources = [source for node in range(4) for source in (1, node + 1 if node else 0)]
    cell = [(source, codes[slot % len(codes)]) for slot, source in enumerate(sources)]
    return str([cell, cell])


ARCHS = FIXTURES["darts"].archs + (  # every op in both cells, reduce-cell skips from a
    # cell input and from a node
    _cells("skip_connect"),
    _cells("max_pool_3x3", "avg_pool_3x3"),
)
# Every node of the all-skip network's last cell sums preprocessed (BatchNorm) states, so
# the sum of all logits over the batch does not depend on the input: jacob_cov's batched
# Jacobian is round-off there (test_the_all_skip_network_s_batched_input_jacobian_is_zero).
ROUND_OFF_JACOBIAN = (ARCHS[3],)
PROXIES = ("grad_norm", "snip", "grasp", "synflow", "naswot", "fisher", "jacob_cov", "plain",
           "l2_norm")
PER_LAYER = ("grad_norm", "snip", "grasp", "fisher", "plain", "l2_norm")


def test_the_archs_are_the_ones_described():
    def ops(arch):
        return {op for cell in torch_darts.parse_arch(arch) for _, op in cell}

    assert set().union(*map(ops, ARCHS[:3])) == set(torch_darts.OPS)
    assert ops(ARCHS[3]) == {"skip_connect"}
    assert ops(ARCHS[4]) == {"max_pool_3x3", "avg_pool_3x3"}
    for arch in ARCHS:  # zcjax's codec reads them as the torch side does
        assert ast.literal_eval(darts.decode(darts.encode(arch))) == ast.literal_eval(arch)


@pytest.fixture(scope="module")
def batch():
    images, labels = zcjax.data.sample_batch("imagenet16-120", 8)
    return np.asarray(images), np.asarray(labels) % CONFIG.num_classes


def variables(config, images):
    """The scorer's own initial weights for key 0 (PyTorch-default distributions)."""
    return jax.device_get(jax.jit(darts.network(config).init)(
        api.init_key(jax.random.key(0)), jnp.asarray(images[:1])))


def torch_model(arch, config, params, dtype=torch.float32):
    model = torch_darts.NetworkCIFAR(arch, config.channels, config.layers, config.num_classes,
                                     config.stem_multiplier, config.affine, config.pool_bn)
    return torch_darts.load_zcjax_params(model.to(dtype), params).train()


@functools.cache
def _loss_and_grads(config):
    return space_parity.loss_and_gradients(darts.network(config))


CASES = [(arch, CONFIG) for arch in ARCHS] + [(ARCHS[0], NASLIB), (ARCHS[4], NASLIB)]


@pytest.mark.parametrize("arch, config", CASES,
                         ids=[f"arch{ARCHS.index(a)}-{'naslib' if c.pool_bn else 'darts'}"
                              for a, c in CASES])
def test_logits_loss_and_gradients_equal_the_darts_network_in_float64(arch, config, batch):
    # A gradient that is zero in exact arithmetic (a BatchNorm after the pools of NASLib's
    # graph cancels the shift of the one before) is round-off (~1e-17) on both sides: it is
    # held to 1e-9 of 1e-3 of the network's largest gradient.
    space_parity.assert_float64_equal(
        _loss_and_grads(config), lambda params, dtype: torch_model(arch, config, params, dtype),
        variables(config, batch[0]), darts.encode(arch), batch, floor=1e-3)


@functools.cache
def _scorer():
    return zcjax.make_scorer("darts", PROXIES, config=CONFIG, per_layer=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_proxies_equal_the_reference_code_on_the_darts_network(arch, batch):
    model = torch_model(arch, CONFIG, variables(CONFIG, batch[0])["params"])
    ours = _scorer()(darts.encode(arch), batch, jax.random.key(0))
    # jacob_cov is round-off on the all-skip network: checked below instead.
    proxies = [name for name in PROXIES
               if not (name == "jacob_cov" and arch in ROUND_OFF_JACOBIAN)]
    space_parity.assert_classic_proxies_equal(ours, model, batch, proxies, PER_LAYER)


def test_the_all_skip_network_s_batched_input_jacobian_is_zero(batch):
    """foresight's jacob_cov differentiates the sum of all logits over the batch; on the
    all-skip network the head reads sums of train-mode BatchNorm outputs, whose batch mean
    is their shift, so that sum is a constant on both sides and its Jacobian round-off."""
    images, _ = batch
    (arch,) = ROUND_OFF_JACOBIAN
    network = darts.network(CONFIG)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64),
                              variables(CONFIG, images)["params"])
        genotype = jnp.asarray(darts.encode(arch))

        def logits(x):
            return network.apply({"params": params}, genotype, x)

        x64 = jnp.asarray(images, jnp.float64)
        ours = jax.grad(lambda x: logits(x).sum())(x64)
        single = jax.grad(lambda x: logits(x)[0].sum())(x64)
    x, _ = to_torch(batch)
    model = torch_model(arch, CONFIG, jax.device_get(params), torch.float64)
    inputs = x.double().requires_grad_(True)
    model(inputs)[1].sum().backward()
    assert np.max(np.abs(ours)) < 1e-12 and float(inputs.grad.abs().max()) < 1e-12
    assert np.max(np.abs(single)) > 1e-6  # one image's logits do depend on its input
