"""SSNR / T-CET aggregation on tiny hand-computed saliencies, layer alignment, and the
compositions of network scores."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats

import zcjax
from conftest import CONNECTED_ARCHS, TINY
from zcjax import aggregate
from zcjax.spaces import nb201

# Three layers: saliencies [1, 2, 3] (S=6, sigma=1), [2, 2] (sigma 0), [4] (one weight:
# sigma NaN with N-1).
SALIENCIES = [jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, 2.0]), jnp.array([4.0])]
ALL_ACTIVE = jnp.array([True, True, True])


def test_layer_snr_by_hand():
    np.testing.assert_allclose(aggregate.layer_snr(SALIENCIES), [6.0, 4.0, 4.0])
    spread = [jnp.array([0.0, 3.0]), jnp.array([1.0, 1.0, 4.0])]
    # std (N-1): [0, 3] -> 2.1213; [1, 1, 4] -> sqrt(3)
    np.testing.assert_allclose(aggregate.layer_snr(spread), [3 / math.sqrt(4.5), 6 / math.sqrt(3)],
                               rtol=1e-6)


def test_ssnr_modes_by_hand():
    score, terms = aggregate.ssnr(SALIENCIES, ALL_ACTIVE)
    assert score == pytest.approx(14.0)
    score, _ = aggregate.ssnr(SALIENCIES, ALL_ACTIVE, "log")
    assert score == pytest.approx(math.log(6) + 2 * math.log(4), rel=1e-6)
    score, _ = aggregate.ssnr(SALIENCIES, ALL_ACTIVE, "log1p")
    assert score == pytest.approx(math.log(7) + 2 * math.log(5), rel=1e-6)
    # norm: divide by the population std of [6, 4, 4] = sqrt(8/9)
    score, _ = aggregate.ssnr(SALIENCIES, ALL_ACTIVE, "norm")
    assert score == pytest.approx(14 / math.sqrt(8 / 9), rel=1e-6)


def test_log_of_non_positive_terms_and_nan_become_zero():
    saliencies = [jnp.array([-1.0, -2.0, -3.0]), jnp.array([0.0, 0.0]), jnp.array([1.0, jnp.nan]),
                  jnp.array([math.e, math.e])]
    score, terms = aggregate.ssnr(saliencies, jnp.ones(4, bool), "log")
    # terms before the log: -6, 0 (sigma 0 -> S), NaN, 2e (sigma 0 -> S)
    np.testing.assert_allclose(terms, [0.0, 0.0, 0.0, math.log(2 * math.e)], rtol=1e-6)
    # without a log, a NaN term stays NaN (a result, not replaced)
    assert np.isnan(float(aggregate.ssnr(saliencies, jnp.ones(4, bool))[0]))


def test_norm_mode_with_constant_terms_divides_by_nothing():
    same = [jnp.array([1.0, 2.0, 3.0])] * 3
    score, _ = aggregate.ssnr(same, ALL_ACTIVE, "norm")
    assert score == pytest.approx(18.0)


def test_inactive_layers_never_count_even_in_norm_and_nan():
    active = jnp.array([True, True, False])
    saliencies = SALIENCIES[:2] + [jnp.array([jnp.nan, 1.0])]
    assert float(aggregate.ssnr(saliencies, active)[0]) == pytest.approx(10.0)
    # norm's std runs over active layers only: [6, 4] -> 1
    assert float(aggregate.ssnr(saliencies, active, "norm")[0]) == pytest.approx(10.0)


def test_tcet_by_hand():
    logdets = jnp.array([10.0, -1.0, 0.5])
    score, products = aggregate.tcet(SALIENCIES, logdets, ALL_ACTIVE)
    np.testing.assert_allclose(products, [60.0, -4.0, 2.0])
    assert float(score) == pytest.approx(58.0)
    score, _ = aggregate.tcet(SALIENCIES, logdets, jnp.array([True, False, True]), "log")
    assert float(score) == pytest.approx(10 * math.log(6) + 0.5 * math.log(4), rel=1e-6)


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown SNR mode 'sqrt'.*log1p"):
        aggregate.ssnr(SALIENCIES, ALL_ACTIVE, "sqrt")


def test_permuting_the_layer_table_permutes_nothing_in_tcet(tiny_batch):
    network = nb201.network(TINY)
    order = np.random.default_rng(0).permutation(len(network.layers))
    permuted = dataclasses.replace(
        network, layers=tuple(network.layers[i] for i in order),
        active=lambda genotype: network.active(genotype)[order])
    genotype = nb201.encode(CONNECTED_ARCHS[0])
    images, labels = tiny_batch
    from zcjax import proxies
    from zcjax.proxies.base import ProxyInputs

    variables = network.init(jax.random.key(0))
    # tcet_synflow multiplies the same way (aggregate.tcet); one T-CET keeps this short.
    chosen = proxies.resolve(["tcet_snip"])
    options = proxies.validate_options(chosen, {})
    results = []
    for net in (network, permuted):
        def run(variables, genotype, images, labels, key, net=net):
            output = proxies.run(chosen, ProxyInputs(net, variables, genotype, images,
                                                     labels, key, options))["tcet_snip"]
            return output.score, output.per_layer

        with jax.enable_x64(True):
            results.append(jax.jit(run)(variables, jnp.asarray(genotype), images, labels,
                                        jax.random.key(1)))
    (score, per_layer), (permuted_score, permuted_per_layer) = results
    np.testing.assert_allclose(permuted_score, score, rtol=1e-6)
    np.testing.assert_allclose(permuted_per_layer, np.asarray(per_layer)[order], rtol=1e-6)


def test_tcet_is_the_layerwise_product_of_ssnr_and_lnwot(tiny_batch):
    scorer = zcjax.make_scorer("nb201", ["snip_snr", "lnwot", "tcet_snip"], config=TINY,
                               per_layer=True)
    out = scorer(nb201.encode(CONNECTED_ARCHS[1]), tiny_batch)
    products = np.where(out["lnwot"].active, np.asarray(out["snip_snr"].per_layer, np.float64)
                        * out["lnwot"].per_layer, 0)
    np.testing.assert_allclose(out["tcet_snip"].per_layer, products, rtol=1e-6)
    assert float(out["tcet_snip"].score) != float(out["snip_snr"].score * out["lnwot"].score)


def test_rank_average_ranks_ties_and_non_finite_scores_as_before():
    """Ties share their average rank; NaN, +inf and -inf all rank last, tied among
    themselves: what aggregate's own ``rank_scores`` (the oracle below) gave before
    rank_average used zcjax.metrics.rank."""

    def former_rank_scores(row):
        return scipy.stats.rankdata(np.where(np.isfinite(row), -row, np.inf), method="average")

    matrix = np.array([[2.0, 2.0, np.nan, np.inf, -np.inf, 1.0, 2.0],
                       [0.0, -0.0, 5.0, 5.0, np.nan, -1.0, 3.0]])
    np.testing.assert_array_equal(aggregate.rank_average(matrix[:1]), [2, 2, 6, 6, 6, 4, 2])
    rng = np.random.default_rng(0)
    values = rng.choice([-1.0, 0.0, 0.5, 2.0, np.nan, np.inf, -np.inf], size=(50, 9))
    for matrix in (matrix, values, rng.normal(size=(3, 20))):
        np.testing.assert_array_equal(aggregate.rank_average(matrix),
                                      np.mean([former_rank_scores(row) for row in matrix], 0))


def test_rank_average_and_product_put_non_finite_last():
    matrix = np.array([[3.0, np.nan, 1.0, 2.0], [0.5, 0.4, -np.inf, 0.1]])
    np.testing.assert_allclose(aggregate.rank_average(matrix), [1.0, 3.0, 3.5, 2.5])
    product = aggregate.score_product(matrix)
    assert product[0] == 1.5 and np.isnan(product[1]) and product[2] == -np.inf


def test_az_nas_rank_by_hand():
    # Ascending ranks, N = 4. Metric 1 [3, 1, 2, NaN]: NaN lowest -> 4, 2, 3, 1.
    # Metric 2 [0.5, 0.5, inf, 0.1]: inf lowest (1), 0.1 -> 2, the tied 0.5s share 3.5.
    matrix = np.array([[3.0, 1.0, 2.0, np.nan], [0.5, 0.5, np.inf, 0.1]])
    expected = [math.log(4 / 4) + math.log(3.5 / 4), math.log(2 / 4) + math.log(3.5 / 4),
                math.log(3 / 4) + math.log(1 / 4), math.log(1 / 4) + math.log(2 / 4)]
    np.testing.assert_allclose(aggregate.az_nas_rank(matrix), expected)


def test_az_nas_rank_best_everywhere_scores_zero_and_matches_the_reference_on_finite_data():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(4, 30))
    matrix[:, 7] = 10.0  # best in every metric
    ours = aggregate.az_nas_rank(matrix)
    assert ours[7] == 0.0 and np.all(ours <= 0)
    # The AZ-NAS notebook: sum of np.log(stats.rankdata(score) / l) over the metrics.
    reference = sum(np.log(scipy.stats.rankdata(row) / 30) for row in matrix)
    np.testing.assert_allclose(ours, reference)


def test_az_nas_rank_one_metric_empty_set_and_non_finite_never_break_the_sum():
    np.testing.assert_allclose(aggregate.az_nas_rank([2.0, 1.0]), [0.0, math.log(1 / 2)])
    assert aggregate.az_nas_rank(np.zeros((4, 0))).shape == (0,)
    ranked = aggregate.az_nas_rank([[np.nan, np.inf, -np.inf, 1.0]])
    # The three non-finite scores share the lowest ranks 1..3 (average 2).
    np.testing.assert_allclose(ranked, [math.log(2 / 4)] * 3 + [0.0])


def test_vkdnw_rank_by_hand():
    # Finite (dim, entropy) pairs in lexicographic order: (1, .9) twice, (2, .3), (2, .5):
    # dense ranks 1, 2, 3 among them, shifted to 2, 3, 4 above the NaN pair's shared 1.
    matrix = np.array([[2, 2, 1, 1, 2], [0.5, 0.3, 0.9, 0.9, np.nan], [1, 2, 3, 4, 5.0]])
    own = np.log(np.array([4, 3, 2, 2, 1]) / 5)
    rest = np.log(np.array([1, 2, 3, 4, 5]) / 5)
    np.testing.assert_allclose(aggregate.vkdnw_rank(matrix), own + rest)
    np.testing.assert_allclose(aggregate.vkdnw_rank(matrix[:2]), own)
    assert aggregate.vkdnw_rank(np.zeros((3, 0))).shape == (0,)
    with pytest.raises(ValueError, match="vkdnw_dim and vkdnw first"):
        aggregate.vkdnw_rank([[1.0, 2.0]])


def test_vkdnw_rank_is_the_authors_log_rank_sum_up_to_a_constant():
    # VKDNW's tss_utils: log of the dense rank of the (dim, entropy) tuple plus log of the
    # pandas average rank of each other metric; ours divides every rank by N.
    rng = np.random.default_rng(1)
    n = 40
    frame = pd.DataFrame({"dim": rng.integers(3, 6, n).astype(float),
                          "entropy": np.round(rng.uniform(0, 2, n), 1),
                          "jacov": rng.normal(size=n), "flops": rng.integers(0, 9, n)})
    authors = (np.log(frame[["dim", "entropy"]].apply(tuple, axis=1).rank(method="dense"))
               + np.log(frame["jacov"].rank()) + np.log(frame["flops"].rank()))
    ours = aggregate.vkdnw_rank(frame.to_numpy(float).T)
    np.testing.assert_allclose(ours, authors.to_numpy() - 3 * np.log(n))


def test_zcjax_composition_is_the_frozen_choice_and_its_proxies_exist():
    """The named composition is the one compose_nb201.py froze (not re-tuned since), and
    every component is a registered proxy."""
    import json
    from pathlib import Path

    frozen = Path(__file__).resolve().parents[1] / "bench" / "composition.json"
    assert list(aggregate.ZCJAX_COMPOSITION) == json.loads(frozen.read_text())["components"]
    assert set(aggregate.ZCJAX_COMPOSITION) <= set(zcjax.proxies.names())
