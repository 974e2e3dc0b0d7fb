"""meco_layers, meco and meco_opt: NumPy on the same feature maps, every space, options.

The reference's quirks (``meco_input="gaussian"``, ``meco_modules="every"``) are held to
the authors' code in tests/parity/test_meco_parity.py.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zcjax
from conftest import ARCHS, TINY
from zcjax.network import layer_outputs
from zcjax.proxies import base as proxy_base
from zcjax.proxies import meco, registry
from zcjax.spaces import nb201


def test_meco_layers_equals_numpy_on_the_captured_outputs(tiny_batch):
    scorer = zcjax.make_scorer("nb201", ["meco_layers"], config=TINY, per_layer=True)
    key = jax.random.key(3)
    images, labels = tiny_batch
    genotype = nb201.encode(ARCHS[0])
    output = scorer(genotype, tiny_batch, key)["meco_layers"]

    network = scorer.network
    variables = network.init(zcjax.api.init_key(key), images[:1])
    _, collections = network.apply(variables, genotype, images, bn="init", capture=True)
    expected = []
    for feature in layer_outputs(network, collections["intermediates"]):
        sample = np.asarray(feature[0], np.float64).reshape(-1, feature.shape[-1]).T
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the logits: one position
            correlation = np.nan_to_num(np.corrcoef(sample), nan=0.0, posinf=0.0, neginf=0.0)
        expected.append(np.linalg.eigvalsh(correlation)[0])
    expected = np.asarray(expected)
    active = np.asarray(output.active)
    np.testing.assert_allclose(np.asarray(output.per_layer)[active], expected[active],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(output.score), expected[active].sum(), rtol=1e-4)
    assert active.sum() < len(active)  # the architecture leaves some candidate convs unused


def test_a_one_channel_layer_is_the_one_by_one_correlation():
    """NB101 gives a vertex one channel in small configs: its correlation is [[1]] (a
    constant channel [[0]]), not the scalar np.corrcoef returns for one row."""
    from zcjax.proxies.meco import channel_correlation

    feature = jax.random.normal(jax.random.key(0), (4, 4, 1))
    np.testing.assert_array_equal(channel_correlation(feature, np.float64), [[1.0]])
    np.testing.assert_array_equal(channel_correlation(np.ones((4, 4, 1)), np.float64), [[0.0]])
    two = channel_correlation(jax.random.normal(jax.random.key(1), (4, 4, 2)), np.float64)
    assert two.shape == (2, 2)


# ---------------------------------------------------------------------------
# meco and meco_opt
# ---------------------------------------------------------------------------

SPACE_CONFIGS = {  # small configs, 16x16 inputs: a 64x64 Gaussian must still run
    "nb201": lambda space: TINY,
    "nb101": lambda space: space.Config(stem_channels=4, cells_per_stack=1, image_size=16),
    "tnb101_micro": lambda space: space.Config(base_channels=4, macro="41", cells_per_layer=1,
                                               image_size=16),
    "darts": lambda space: space.Config(channels=4, layers=2, image_size=16),
}


@pytest.mark.parametrize("space_name", zcjax.space_names())
def test_meco_and_meco_opt_are_finite_on_every_space(space_name, tiny_batch):
    space = zcjax.get_space(space_name)
    if space_name not in SPACE_CONFIGS:
        pytest.fail(f"space {space_name!r} has no small config in tests/test_meco.py")
    config = SPACE_CONFIGS[space_name](space)
    genotype = space.sample(jax.random.key(1), 1)[0]
    # The 64x64 Gaussian into networks configured for 16x16 (the default "batch" input is
    # every other test's); DARTS' network has static tap shapes, so there it must raise.
    # meco_opt on DARTS (a subset per candidate layer) compiles for minutes: slow tests.
    meco_input = "batch" if space_name == "darts" else "gaussian"
    proxies = ["meco"] if space_name == "darts" else ["meco", "meco_opt"]
    scorer = zcjax.make_scorer(space_name, proxies, config=config, meco_input=meco_input)
    scores = scorer(genotype, tiny_batch, jax.random.key(0))
    for name in proxies:
        assert np.isfinite(float(scores[name])), (space_name, meco_input, name, scores)
    if space_name == "darts":
        gaussian = zcjax.make_scorer(space_name, ["meco"], config=config, meco_input="gaussian")
        with pytest.raises(ValueError, match="64x64 image.*darts network"):
            gaussian(genotype, tiny_batch, jax.random.key(0))


def test_every_module_is_nb201_only(tiny_batch):
    space = zcjax.get_space("darts")
    scorer = zcjax.make_scorer("darts", ["meco"], config=SPACE_CONFIGS["darts"](space),
                               meco_modules="every")
    with pytest.raises(ValueError, match="meco_modules='every'.*nb201 only"):
        scorer(space.sample(jax.random.key(1), 1)[0], tiny_batch, jax.random.key(0))


@pytest.mark.parametrize("option, value", [("meco_input", "uniform"), ("meco_modules", "all"),
                                           ("meco_modules", 1)])
def test_invalid_option_values_raise_one_clear_error(option, value):
    with pytest.raises(ValueError, match=f"option {option}=.*valid values"):
        registry.validate_options(["meco", "meco_opt"], {option: value})


def test_the_default_reads_the_first_image_only_and_gaussian_none(tiny_batch):
    """Also: TINY's widths are 2/4/8, so every MeCo_opt subset is the whole map (scale
    C / C = 1) and meco_opt equals meco."""
    images, labels = tiny_batch
    changed = (np.concatenate([images[:1], images[1:][::-1] * 2.0]), labels)
    other_first = (np.concatenate([images[1:2], images[1:]]), labels)
    genotype = nb201.encode(ARCHS[0])
    key = jax.random.key(0)
    for meco_input in ("batch", "gaussian"):
        scorer = zcjax.make_scorer("nb201", ["meco", "meco_opt"], config=TINY,
                                   meco_input=meco_input)
        scores = scorer(genotype, tiny_batch, key)
        base = float(scores["meco"])
        np.testing.assert_allclose(float(scores["meco_opt"]), base, rtol=1e-9)
        assert float(scorer(genotype, changed, key)["meco"]) == pytest.approx(base, rel=1e-6)
        moved = float(scorer(genotype, other_first, key)["meco"])
        assert (moved == pytest.approx(base, rel=1e-6)) == (meco_input == "gaussian")


def _numpy_min_eig(feature):
    rows = np.asarray(feature, np.float64).reshape(-1, feature.shape[-1]).T
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        correlation = np.atleast_2d(np.corrcoef(rows))
    correlation = np.where(np.isfinite(correlation), correlation, 0.0)
    return np.linalg.eigvalsh(correlation)[0]


@pytest.mark.parametrize("modules", ["layers", pytest.param("every", marks=pytest.mark.slow)])
def test_meco_and_meco_opt_equal_numpy_on_the_terms(modules, tiny_batch):
    """Both proxies from the pass's feature maps, recomputed in NumPy: MeCo sums count x
    min eigenvalue; MeCo_opt takes opt_channels' subset (8 of 16 channels in the last
    stage) and scales by C / 8, one draw per count."""
    config = nb201.Config(channels=(4, 8, 16), cells_per_stage=1, image_size=16)
    network = nb201.network(config)
    options = registry.validate_options(["meco", "meco_opt"], {"meco_modules": modules})
    resolved = registry.resolve(["meco", "meco_opt"])
    images, labels = tiny_batch
    key = jax.random.key(5)
    genotype = jnp.asarray(nb201.encode(ARCHS[0]))

    def run(variables):
        inputs = proxy_base.ProxyInputs(network, variables, genotype, images, labels, key,
                                        options)
        outputs = registry.run(resolved, inputs)
        return ({name: out.score for name, out in outputs.items()}, meco.meco_terms(inputs),
                meco.meco_draws(inputs)[1])

    with jax.enable_x64(True):
        scores, terms, subset_key = jax.jit(run)(network.init(jax.random.key(0)))
        expected_meco = expected_opt = 0.0
        widths = set()
        for index, term in enumerate(terms):
            feature, count = np.asarray(term.feature), int(term.count)
            expected_meco += count * _numpy_min_eig(feature)
            channels = feature.shape[-1]
            widths.add(channels)
            for copy in range(count):
                subset = np.asarray(meco.opt_channels(subset_key, index, copy, channels))
                assert len(set(subset.tolist())) == len(subset) == min(8, channels)
                expected_opt += _numpy_min_eig(feature[..., subset]) * channels / len(subset)
    assert 16 in widths  # some terms are subsampled and scaled by 16 / 8
    np.testing.assert_allclose(float(scores["meco"]), expected_meco, rtol=1e-6)
    np.testing.assert_allclose(float(scores["meco_opt"]), expected_opt, rtol=1e-6)
    assert float(scores["meco_opt"]) != pytest.approx(float(scores["meco"]), rel=1e-3)


@pytest.mark.slow
def test_meco_opt_is_finite_on_darts(tiny_batch):
    space = zcjax.get_space("darts")
    scorer = zcjax.make_scorer("darts", ["meco_opt"], config=SPACE_CONFIGS["darts"](space))
    score = scorer(space.sample(jax.random.key(1), 1)[0], tiny_batch, jax.random.key(0))
    assert np.isfinite(float(score["meco_opt"]))
