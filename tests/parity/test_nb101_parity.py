"""zcjax's nb101 network against an independent PyTorch NAS-Bench-101 network
(``torch_nb101.py``, written from the benchmark's model builder) on identical weights.

A small network of the benchmark's form (stem 8 channels, three stacks of two cells, so two
stack-opening max-pools and both of zcjax's cell runs per stack; 16x16 inputs, 10 classes),
8 real images, six architectures over four shape signatures: the three of the conformance
suite (one signature: every vertex op, truncating edges, projections present and absent,
an input -> output edge), one whose genotype holds a vertex the benchmark prunes, a cell of
max-pools only, and the smallest cell (input -> output, the projection alone).

* float64 on both sides: logits, mean cross-entropy and the gradient of every parameter of
  the torch model (its chosen ops) to 1e-9 of the largest magnitude;
* float32, zcjax's scorer against alethiometer's grad_norm, snip, grasp, synflow and
  nwot_relu and the PyTorch re-derivations of fisher, jacob_cov, plain and l2_norm of
  ``test_alethiometer_parity`` (the same reference code as the NB201 suite), per layer where
  the proxy has layers, to the NB201 suite's tolerances (grasp and plain, signed sums,
  relative to the L1 norm of their terms).

zcjax's network differs from the benchmark's on purpose in its initialisation only
(PyTorch's defaults; the benchmark's TensorFlow code and NASLib's port use other
initialisers): the weights are copied here, so nothing depends on it. The max-pools floor
odd sizes as PyTorch's do; the sizes here are even, where TensorFlow's ``same`` pooling
agrees.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import torch  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import zcjax  # noqa: E402
from zcjax import api  # noqa: E402
from zcjax.spaces import nb101  # noqa: E402

import space_parity  # noqa: E402
import torch_nb101  # noqa: E402
from test_space_conformance import FIXTURES  # noqa: E402

CONFIG = nb101.Config(stem_channels=8, stacks=3, cells_per_stack=2, image_size=16)


def _arch(edges, ops):
    """A NASLib key from edges and the five interior op codes (2 pool, 3 1x1, 4 3x3)."""
    matrix = np.zeros((7, 7), np.int64)
    for source, target in edges:
        matrix[source, target] = 1
    return nb101.decode(np.concatenate([matrix.ravel(), [0, *ops, 1]]))


ARCHS = FIXTURES["nb101"].archs + (  # the conformance suite's signature (three vertices
    # feed the output): every op, truncating edges, projections present and absent
    # Vertices 2 and 5 reach nothing (pruned); 1 -> 3 -> 4 -> output, input -> 4 and output.
    _arch(((0, 1), (0, 2), (1, 3), (3, 4), (0, 4), (4, 6), (0, 6), (2, 5)), (4, 3, 3, 3, 2)),
    # Max-pools only: every conv of the cells is a projection.
    _arch(((0, 1), (1, 2), (0, 3), (2, 6), (3, 6)), (2, 2, 2, 2, 2)),
)
# The smallest cell: the input's projection to the output alone.
SMALLEST = nb101.decode(nb101.from_spec([[0, 1], [0, 0]], ["input", "output"]))
ARCHS += (SMALLEST,)
PROXIES = ("grad_norm", "snip", "grasp", "synflow", "naswot", "fisher", "jacob_cov", "plain",
           "l2_norm")
PER_LAYER = ("grad_norm", "snip", "grasp", "fisher", "plain", "l2_norm")


def test_the_archs_cover_four_signatures_and_a_pruned_vertex():
    signatures = {nb101.signature(arch, CONFIG) for arch in ARCHS}
    assert len(signatures) == 4
    matrix, _ = nb101.to_spec(ARCHS[3], prune=False)
    pruned, _ = torch_nb101.prune(*torch_nb101.parse_arch(ARCHS[3]))
    assert len(pruned) < len(matrix)


@pytest.fixture(scope="module")
def batch():
    images, labels = zcjax.data.sample_batch("imagenet16-120", 8)
    return np.asarray(images), np.asarray(labels) % CONFIG.num_classes


def variables(arch, images):
    """The scorer's own initial weights for key 0 (PyTorch-default distributions)."""
    network = nb101.network(CONFIG, nb101.signature(arch, CONFIG))
    return jax.device_get(jax.jit(network.init)(api.init_key(jax.random.key(0)),
                                                jnp.asarray(images[:1])))


def torch_model(arch, params, dtype=torch.float32):
    model = torch_nb101.Network(arch, CONFIG.stem_channels, CONFIG.stacks,
                                CONFIG.cells_per_stack, CONFIG.num_classes)
    return torch_nb101.load_zcjax_params(model.to(dtype), params,
                                         CONFIG.cells_per_stack).train()


@functools.cache
def _loss_and_grads(signature):
    """One compiled loss-and-gradient program per signature."""
    return space_parity.loss_and_gradients(nb101.network(CONFIG, signature))


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_loss_and_gradients_equal_the_benchmark_network_in_float64(arch, batch):
    space_parity.assert_float64_equal(
        _loss_and_grads(nb101.signature(arch, CONFIG)),
        lambda params, dtype: torch_model(arch, params, dtype), variables(arch, batch[0]),
        nb101.encode(arch), batch)


@functools.cache
def _scorer():
    return zcjax.make_scorer("nb101", PROXIES, config=CONFIG, per_layer=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_proxies_equal_the_reference_code_on_the_benchmark_network(arch, batch):
    model = torch_model(arch, variables(arch, batch[0])["params"])
    ours = _scorer()(nb101.encode(arch), batch, jax.random.key(0))
    space_parity.assert_classic_proxies_equal(ours, model, batch, PROXIES, PER_LAYER)
