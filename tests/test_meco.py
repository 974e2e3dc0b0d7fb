"""meco_layers against NumPy on the same captured layer outputs."""

import warnings

import jax
import numpy as np

import zcjax
from conftest import ARCHS, TINY
from zcjax.network import layer_outputs
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
