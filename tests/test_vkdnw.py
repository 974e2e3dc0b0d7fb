"""VKDNW (``vkdnw``, ``vkdnw_dim``): properties that hold whatever the weights.

The authors' code is held against in tests/parity/test_vkdnw_parity.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

import zcjax
from zcjax.proxies import base as proxy_base
from zcjax.proxies import registry, vkdnw
from zcjax.spaces import nb201

NAMES = ("vkdnw", "vkdnw_dim")
CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MIXED = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|"
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@functools.lru_cache(maxsize=None)
def _runner(space_name, config, signature=None, **options):
    space = zcjax.get_space(space_name)
    network = space.network(config) if signature is None else space.network(config, signature)
    validated = registry.validate_options(NAMES, options)
    resolved = registry.resolve(NAMES)

    def run(variables, genotype, images, key):
        inputs = proxy_base.ProxyInputs(network, variables, genotype, images,
                                        jnp.zeros(images.shape[0], jnp.int32), key, validated)
        return {name: out.score for name, out in registry.run(resolved, inputs).items()}

    return network, jax.jit(run)


def score(space_name, config, genotype, images, key, signature=None, variables=None, **options):
    network, run = _runner(space_name, config, signature, **options)
    if variables is None:
        variables = network.init(jax.random.key(0))
    with jax.enable_x64(True):
        out = run(variables, jnp.asarray(genotype), images, key)
        return {name: float(value) for name, value in out.items()}


def test_nb201_dim_counts_the_per_architecture_models_tensors(tiny_batch, key):
    # 21 fixed tensors (stem 3, reductions 7 + 7, lastact 2, classifier 2) + 3 per conv
    # edge in each of the 3 cells (TINY has one cell per stage).
    images = jnp.asarray(tiny_batch[0][:4])
    for arch, convs in ((CONV3, 6), (MIXED, 2), (NONE, 0), (SKIP, 0)):
        assert score("nb201", TINY, nb201.encode(arch), images, key)["vkdnw_dim"] == 21 + 9 * convs


def test_nb201_tensor_order_is_pytorchs():
    network = nb201.network(TINY)
    tensors = vkdnw.parameter_tensors(network, jax.eval_shape(network.init, jax.random.key(0))["params"])
    names = ["/".join(t.path) for t in tensors]
    assert names[:6] == ["stem/conv/kernel", "stem/bn/scale", "stem/bn/bias",
                         "cells_0/edge_1_0/conv1x1/kernel", "cells_0/edge_1_0/bn1x1/scale",
                         "cells_0/edge_1_0/bn1x1/bias"]
    assert names[-4:] == ["head_bn/scale", "head_bn/bias", "classifier/kernel", "classifier/bias"]
    reduction = names.index("reduction_1/conv_a/conv/kernel")
    assert names[reduction:reduction + 7] == [
        "reduction_1/conv_a/conv/kernel", "reduction_1/conv_a/bn/scale", "reduction_1/conv_a/bn/bias",
        "reduction_1/conv_b/conv/kernel", "reduction_1/conv_b/bn/scale", "reduction_1/conv_b/bn/bias",
        "reduction_1/shortcut/kernel"]


def test_kernel_entries_follow_pytorchs_flat_layout():
    # zcjax HWIO (3, 3, 2, 4) is PyTorch OIHW (4, 2, 3, 3): torch entry k -> HWIO index.
    shape = (3, 3, 2, 4)
    entries = vkdnw._torch_entries(shape, True, 5)
    oihw = np.arange(np.prod(shape)).reshape(4, 2, 3, 3)
    hwio = oihw.transpose(2, 3, 1, 0)
    flat = np.floor(np.linspace(0, oihw.size - 1, 5)).astype(int)
    np.testing.assert_array_equal(hwio[tuple(entries.T)], flat)


@pytest.mark.parametrize("arch", (CONV3, MIXED, NONE))
def test_nb201_entropy_is_within_its_bounds_and_deterministic(arch, tiny_batch, key):
    images = jnp.asarray(tiny_batch[0][:4])
    first = score("nb201", TINY, nb201.encode(arch), images, key)["vkdnw"]
    assert 0.0 <= first <= np.log(9) + 1e-6
    assert score("nb201", TINY, nb201.encode(arch), images, key)["vkdnw"] == first


def test_gaussian_default_ignores_the_batch_and_batch_option_reads_it(tiny_batch, key):
    images = jnp.asarray(tiny_batch[0][:4])
    genotype = nb201.encode(CONV3)
    a = score("nb201", TINY, genotype, images, key)["vkdnw"]
    assert score("nb201", TINY, genotype, images * 3 + 1, key)["vkdnw"] == a
    b = score("nb201", TINY, genotype, images, key, vkdnw_inputs="batch")["vkdnw"]
    c = score("nb201", TINY, genotype, images * 3 + 1, key, vkdnw_inputs="batch")["vkdnw"]
    assert b != c


def test_entropy_is_invariant_to_scaling_the_spectrum():
    # t = q / sum q: scaling every singular value leaves the entropy (up to the 1e-10s).
    values = jnp.asarray(np.sort(np.random.default_rng(0).exponential(size=20))[::-1])
    for count in (1, 7, 20):
        a = vkdnw.spectrum_entropy(values, jnp.asarray(count))
        b = vkdnw.spectrum_entropy(values * 1000.0, jnp.asarray(count))
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Equal singular values: nine equal deciles, the maximum log 9.
    np.testing.assert_allclose(vkdnw.spectrum_entropy(jnp.ones(20), jnp.asarray(20)),
                               np.log(9), rtol=1e-6)


def test_quantiles_are_numpys_linear_ones_over_the_counted_values():
    rng = np.random.default_rng(1)
    values = np.sort(rng.exponential(size=30))[::-1]
    levels = np.arange(1, 10) / 10
    for count in (1, 2, 9, 17, 30):
        ours = vkdnw._quantiles(jnp.asarray(values), jnp.asarray(count), levels)
        np.testing.assert_allclose(ours, np.quantile(values[:count], levels), rtol=1e-6)


def test_cholesky_factor_reproduces_the_smoothed_covariance():
    logits = jnp.asarray(np.random.default_rng(2).normal(size=(3, 10)), jnp.float32)
    factor = vkdnw.cholesky_factor(logits)
    prob = jax.nn.softmax(logits) * float(np.float16(1) - np.float16(0.05)) \
        + float(np.float16(np.float16(0.05) / np.float16(10)))
    covariance = jax.vmap(jnp.diag)(prob) - prob[:, :, None] * prob[:, None, :]
    np.testing.assert_allclose(factor @ jnp.swapaxes(factor, 1, 2), covariance, atol=1e-3)
    assert np.all(np.triu(np.asarray(factor[0]), 1) == 0)


def test_non_finite_weights_propagate(tiny_batch, key):
    network, _ = _runner("nb201", TINY, None, sota_init="scorer")
    variables = network.init(jax.random.key(0))
    params = jax.tree.map(lambda x: x, variables["params"])
    params["stem"]["conv"]["kernel"] = params["stem"]["conv"]["kernel"].at[0, 0, 0, 0].set(jnp.nan)
    out = score("nb201", TINY, nb201.encode(CONV3), jnp.asarray(tiny_batch[0][:4]), key,
                variables={"params": params}, sota_init="scorer")
    assert not np.isfinite(out["vkdnw"])


@pytest.mark.slow  # one more compilation (~60 s) for an option check
def test_truncating_the_tensors_changes_the_fisher(tiny_batch, key):
    images = jnp.asarray(tiny_batch[0][:4])
    genotype = nb201.encode(CONV3)
    a = score("nb201", TINY, genotype, images, key)["vkdnw"]
    b = score("nb201", TINY, genotype, images, key, vkdnw_tensors=5)["vkdnw"]
    assert a != b and 0 <= b <= np.log(9) + 1e-6


def test_tnb101_micro_scores_and_counts(key):
    space = zcjax.get_space("tnb101_micro")
    config = space.Config(base_channels=4, macro="41", cells_per_layer=1, image_size=16)
    images = jax.random.normal(jax.random.key(3), (4, 16, 16, 3))
    counts = []
    for arch in (CONV3, NONE):
        out = score("tnb101_micro", config, space.encode(arch), images, key)
        assert 0.0 <= out["vkdnw"] <= np.log(9) + 1e-6
        counts.append(out["vkdnw_dim"])
    # Every BatchNorm of the network belongs to exactly one tensor pair.
    network = space.network(config)
    params = jax.eval_shape(network.init, jax.random.key(0))["params"]
    paths = ["/".join(t.path) for t in vkdnw.parameter_tensors(network, params)]
    bn_leaves = ["/".join(k.key for k in path) for path, _ in
                 jax.tree_util.tree_flatten_with_path(params)[0] if path[-1].key == "scale"]
    assert sorted(p for p in paths if p.endswith("/scale")) == sorted(bn_leaves)
    assert len(set(paths)) == len(paths)
    # The all-conv cell has 6 conv edges x 3 tensors more than the all-none cell per cell.
    assert counts[0] > counts[1]
