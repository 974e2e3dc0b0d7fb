"""SWAP (``swap``, ``swap_reg``): NumPy on the captured ReLU inputs, every space, the size
factor from its definition, option errors.

PyTorch's NB201 (xautodl's TinyNetwork, nn.ReLU hooks) is held against it in
tests/parity/test_swap_parity.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ARCHS, TINY

import zcjax
from zcjax.network import sown_values
from zcjax.proxies import base as proxy_base
from zcjax.proxies import registry, swap
from zcjax.spaces import nb201

NAMES = ("swap", "swap_reg")
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
assert NONE in ARCHS and SKIP in ARCHS

# Small configs per space (those of tests/test_space_conformance.py's scoring checks).
SPACE_CONFIGS = {
    "nb201": dict(channels=(2, 4, 8), cells_per_stage=1, image_size=16),
    "nb101": dict(stem_channels=4, stacks=2, cells_per_stack=1, image_size=16),
    "tnb101_micro": dict(base_channels=4, macro="41", cells_per_layer=1, num_classes=10,
                         image_size=16),
    "darts": dict(channels=4, layers=2, num_classes=10, image_size=16),
}


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

    return network, jax.jit(run), validated


def score(space_name, config, genotype, images, signature=None, **options):
    network, run, _ = _runner(space_name, config, signature, **options)
    variables = network.init(jax.random.key(0))
    with jax.enable_x64(True):
        out = run(variables, jnp.asarray(genotype), images, jax.random.key(1))
        return {name: float(value) for name, value in out.items()}


def numpy_swap(network, genotype, images, samples, bn="init"):
    """The definition in NumPy: rows = (ReLU neurons of the used sites) x samples."""
    variables = network.init(jax.random.key(0))
    _, collections = network.apply(variables, jnp.asarray(genotype), images, bn=bn,
                                   capture=True)
    rows = []
    for relu_inputs, relu_modules, _ in sown_values(collections["relu"]):
        relu_inputs, relu_modules = np.asarray(relu_inputs), np.asarray(relu_modules)
        sites = relu_inputs.reshape((-1,) + relu_inputs.shape[relu_modules.ndim:])
        for site, modules in zip(sites, relu_modules.reshape(-1)):
            if modules > 0 and site.ndim == 4:
                signs = np.maximum(site[:samples], 0) > 0  # the ReLU's output, its sign
                rows.extend([signs.reshape(samples, -1).T] * int(modules))  # one per module
    return len(np.unique(np.concatenate(rows), axis=0))


@pytest.mark.parametrize("arch", ARCHS)
def test_nb201_equals_numpy_on_the_captured_relu_inputs(arch, tiny_batch):
    images = jnp.asarray(tiny_batch[0])
    network, _, _ = _runner("nb201", TINY, swap_samples=8)
    expected = numpy_swap(network, nb201.encode(arch), images, 8)
    assert score("nb201", TINY, nb201.encode(arch), images, swap_samples=8)["swap"] == expected
    fewer = numpy_swap(network, nb201.encode(arch), images, 3)
    assert score("nb201", TINY, nb201.encode(arch), images, swap_samples=3)["swap"] == fewer


def test_more_than_one_word_of_samples_equals_numpy():
    # 40 samples: two uint32 words per neuron; 64 exactly two full words.
    images = jax.random.normal(jax.random.key(3), (64, 16, 16, 3), jnp.float32)
    network, _, _ = _runner("nb201", TINY, swap_samples=40)
    for arch in (ARCHS[0], ARCHS[2]):
        for samples in (40, 64):
            expected = numpy_swap(network, nb201.encode(arch), images, samples)
            got = score("nb201", TINY, nb201.encode(arch), images, swap_samples=samples)["swap"]
            assert got == expected, (arch, samples)


def test_batch_statistics_bn_equals_numpy(tiny_batch):
    images = jnp.asarray(tiny_batch[0])
    network, _, _ = _runner("nb201", TINY, swap_samples=8, activation_bn="batch")
    for arch in (ARCHS[0], ARCHS[2]):
        expected = numpy_swap(network, nb201.encode(arch), images, 8, bn="batch")
        assert score("nb201", TINY, nb201.encode(arch), images, swap_samples=8,
                     activation_bn="batch")["swap"] == expected


def test_distinct_rows_ignores_invalid_rows_whatever_their_pattern():
    words = jnp.asarray([[5, 0], [5, 0], [7, 1], [0, 0], [9, 9], [7, 1]], jnp.uint32)
    valid = jnp.asarray([True, True, True, False, False, True])
    assert int(swap.distinct_rows(words, valid)) == 2
    assert int(swap.distinct_rows(words, jnp.ones(6, bool))) == 4
    assert int(swap.distinct_rows(words, jnp.zeros(6, bool))) == 0
    # A pattern shared by a valid and an invalid row counts once.
    assert int(swap.distinct_rows(words, valid.at[4].set(True).at[3].set(False))) == 3


def test_pack_signs_sets_bit_k_of_word_w_for_sample_32w_plus_k():
    codes = np.zeros((1, 40), bool)
    codes[0, [0, 31, 33]] = True
    np.testing.assert_array_equal(np.asarray(swap.pack_signs(jnp.asarray(codes))),
                                  [[1 | (1 << 31), 2]])


def test_one_program_for_every_nb201_genotype(tiny_batch):
    network, run, _ = _runner("nb201", TINY, swap_samples=8)
    variables = network.init(jax.random.key(0))
    with jax.enable_x64(True):
        for arch in ARCHS[:3]:
            run(variables, jnp.asarray(nb201.encode(arch)), jnp.asarray(tiny_batch[0]),
                jax.random.key(1))
    assert run._cache_size() == 1


@pytest.mark.parametrize("space_name", sorted(SPACE_CONFIGS))
def test_every_space_finite_positive_and_the_size_factor_from_its_definition(space_name,
                                                                             tiny_batch):
    space = zcjax.get_space(space_name)
    config = space.Config(**SPACE_CONFIGS[space_name])
    images = jnp.asarray(tiny_batch[0])[:, :config.image_size, :config.image_size]
    mu, sigma = 0.01, 0.5
    for genotype in space.sample(jax.random.key(5), 2):
        signature = space.signature(genotype, config) if space.offers("signature") else None
        out = score(space_name, config, genotype, images, signature, swap_samples=8,
                    swap_mu=mu, swap_sigma=sigma)
        assert np.isfinite(out["swap"]) and out["swap"] >= 1
        assert out["swap"] == int(out["swap"])
        millions = space.param_count(genotype, config) / 1e6
        np.testing.assert_allclose(out["swap_reg"],
                                   out["swap"] * np.exp(-(millions - mu) ** 2 / sigma),
                                   rtol=1e-12)
        assert 0 < out["swap_reg"] <= out["swap"]


def test_nb201_defaults_and_size_factor(tiny_batch):
    images = jnp.asarray(tiny_batch[0])
    _, _, validated = _runner("nb201", TINY, swap_samples=8)
    assert (validated["swap_mu"], validated["swap_sigma"]) == (0.8, 0.1)
    assert registry.validate_options(["swap"], {})["swap_samples"] == 16
    for arch in (SKIP, ARCHS[2]):
        out = score("nb201", TINY, nb201.encode(arch), images, swap_samples=8)
        millions = nb201.param_count(arch, TINY) / 1e6
        np.testing.assert_allclose(out["swap_reg"],
                                   out["swap"] * np.exp(-(millions - 0.8) ** 2 / 0.1),
                                   rtol=1e-12)


def test_the_options_each_proxy_reads():
    assert [o.name for o in registry.options_read("swap")] == ["activation_bn", "swap_samples"]
    assert [o.name for o in registry.options_read("swap_reg")] == [
        "activation_bn", "swap_mu", "swap_samples", "swap_sigma"]


@pytest.mark.parametrize("options, message", [
    (dict(swap_samples=9), r"swap_samples=9 must be between 1 and the batch size \(8 images\)"),
    (dict(swap_samples=0), r"swap_samples=0 must be between 1"),
    (dict(swap_samples=8, swap_sigma=0.0), r"swap_sigma=0.0 must be positive"),
])
def test_out_of_range_options_are_one_clear_error(options, message, tiny_batch):
    with pytest.raises(ValueError, match=message):
        score("nb201", TINY, nb201.encode(ARCHS[0]), jnp.asarray(tiny_batch[0]), **options)


@pytest.mark.parametrize("options, message", [
    (dict(swap_samples=2.5), r"option swap_samples=2.5 is not valid; valid values: a int"),
    (dict(swap_mu="big"), r"option swap_mu='big' is not valid"),
])
def test_ill_typed_options_are_one_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        registry.validate_options(NAMES, options)
