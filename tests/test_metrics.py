"""zcjax.metrics: rank agreement, NaN-aware. Expected values come from scipy or by hand."""

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from zcjax import metrics


def _random_pair(seed, n=40):
    rng = np.random.default_rng(seed)
    accuracies = rng.uniform(50, 95, n)
    scores = accuracies + rng.normal(0, 10, n)
    return scores, accuracies


# --- Kendall and Spearman ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kendall_and_spearman_equal_scipy_on_finite_data(seed):
    scores, accuracies = _random_pair(seed)
    scores = np.round(scores)  # ties, so tau-b differs from tau-a
    tau = metrics.kendall_tau(scores, accuracies)
    rho = metrics.spearman_rho(scores, accuracies)
    expected_tau = scipy.stats.kendalltau(scores, accuracies)
    expected_rho = scipy.stats.spearmanr(scores, accuracies)
    assert tau.value == pytest.approx(expected_tau.statistic, abs=1e-12)
    assert tau.pvalue == pytest.approx(expected_tau.pvalue, abs=1e-12)
    assert rho.value == pytest.approx(expected_rho.statistic, abs=1e-12)
    assert (tau.n, tau.dropped, rho.n, rho.dropped) == (40, 0, 40, 0)


def test_kendall_variant_c_equals_scipy():
    scores, accuracies = _random_pair(3)
    scores = np.round(scores, -1)
    expected = scipy.stats.kendalltau(scores, accuracies, variant="c").statistic
    assert metrics.kendall_tau(scores, accuracies, variant="c").value == pytest.approx(expected)
    assert expected != pytest.approx(scipy.stats.kendalltau(scores, accuracies).statistic)


def test_correlations_drop_non_finite_pairs_and_count_them():
    scores, accuracies = _random_pair(4)
    scores[[1, 4]] = np.nan
    scores[7] = np.inf
    accuracies[[4, 9]] = np.nan
    accuracies[12] = -np.inf
    bad = [1, 4, 7, 9, 12]  # the union, written by hand: index 4 is bad in both
    good = np.setdiff1d(np.arange(40), bad)
    tau = metrics.kendall_tau(scores, accuracies)
    rho = metrics.spearman_rho(scores, accuracies)
    expected_tau = scipy.stats.kendalltau(scores[good], accuracies[good]).statistic
    expected_rho = scipy.stats.spearmanr(scores[good], accuracies[good]).statistic
    assert tau.value == pytest.approx(expected_tau, abs=1e-12)
    assert rho.value == pytest.approx(expected_rho, abs=1e-12)
    assert (tau.n, tau.dropped) == (35, 5)
    assert (rho.n, rho.dropped) == (35, 5)


def test_perfect_and_reversed_rankings():
    accuracies = np.array([61.0, 70.5, 72.0, 80.0, 93.2])
    increasing = np.exp(accuracies / 10)
    assert metrics.kendall_tau(increasing, accuracies).value == pytest.approx(1.0)
    assert metrics.spearman_rho(increasing, accuracies).value == pytest.approx(1.0)
    assert metrics.kendall_tau(-increasing, accuracies).value == pytest.approx(-1.0)
    assert metrics.spearman_rho(-increasing, accuracies).value == pytest.approx(-1.0)


def test_too_few_pairs_and_constant_give_nan_not_error():
    result = metrics.kendall_tau([1.0, np.nan, 3.0], [np.nan, 2.0, 5.0])
    assert math.isnan(result.value)
    assert (result.n, result.dropped) == (1, 2)
    result = metrics.spearman_rho([], [])
    assert math.isnan(result.value) and (result.n, result.dropped) == (0, 0)
    assert math.isnan(metrics.kendall_tau([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]).value)
    assert math.isnan(metrics.spearman_rho([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]).value)


def test_correlation_converts_to_float():
    assert float(metrics.kendall_tau([1, 2, 3], [1, 3, 2])) == pytest.approx(1 / 3)


def _strictly_increasing(draw_increments, values):
    """An arbitrary strictly increasing map, defined on the values' support."""
    support = np.unique(values[np.isfinite(values)])
    image = np.cumsum(draw_increments[: support.size]) - 1e3
    out = values.copy()
    finite = np.isfinite(values)
    out[finite] = image[np.searchsorted(support, values[finite])]
    return out


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.one_of(st.integers(-5, 5).map(float), st.just(math.nan)),
            st.integers(0, 8).map(float),
        ),
        min_size=3,
        max_size=30,
    ),
    increments=st.lists(st.floats(1e-3, 1e3), min_size=30, max_size=30),
)
def test_kendall_invariant_under_strictly_increasing_transform(data, increments):
    scores, accuracies = (np.array(column) for column in zip(*data))
    transformed = _strictly_increasing(np.array(increments), scores)
    before = metrics.kendall_tau(scores, accuracies)
    after = metrics.kendall_tau(transformed, accuracies)
    assert (after.n, after.dropped) == (before.n, before.dropped)
    if math.isnan(before.value):
        assert math.isnan(after.value)
    else:
        assert after.value == pytest.approx(before.value, abs=1e-12)


# --- top-k overlap ----------------------------------------------------------------------------

# Index:        0     1     2       3     4     5
SCORES = [0.9, 0.1, 0.5, np.nan, 0.7, 0.3]
ACCURACIES = [90.0, 80.0, 70.0, 95.0, 60.0, 50.0]
# By accuracy: 3, 0, 1, 2, 4, 5.  By score (NaN last): 0, 4, 2, 5, 1, 3.
# top-2: {3, 0} vs {0, 4} -> {0}       = 1/2
# top-3: {3, 0, 1} vs {0, 4, 2} -> {0} = 1/3
# top-4: {3, 0, 1, 2} vs {0, 4, 2, 5} -> {0, 2} = 2/4


@pytest.mark.parametrize("k, expected", [(1, 0.0), (2, 1 / 2), (3, 1 / 3), (4, 2 / 4), (6, 1.0)])
def test_top_k_overlap_hand_computed(k, expected):
    result = metrics.top_k_overlap(SCORES, ACCURACIES, k=k)
    assert result.value == pytest.approx(expected)
    assert (result.n, result.dropped) == (k, 0)


@pytest.mark.parametrize("fraction, k", [(0.25, 2), (0.5, 3), (0.6, 4), (1.0, 6)])
def test_top_k_fraction_matches_k(fraction, k):
    # 6 architectures: 0.25 -> 1.5 -> 2, 0.6 -> 3.6 -> 4 (rounded up).
    by_fraction = metrics.top_k_overlap(SCORES, ACCURACIES, fraction=fraction)
    by_k = metrics.top_k_overlap(SCORES, ACCURACIES, k=k)
    assert (by_fraction.value, by_fraction.n) == (by_k.value, by_k.n)


def test_top_ten_percent_of_seventy_is_seven():
    # 0.1 * 70 is 7.000000000000001 in floating point.
    result = metrics.top_k_overlap(np.arange(70.0), np.arange(70.0), fraction=0.1)
    assert (result.value, result.n) == (1.0, 7)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_top_k_non_finite_score_ranked_last(bad):
    scores = list(SCORES)
    scores[3] = bad  # the most accurate architecture
    # Were +inf taken as the best score, top-2 by score would be {3, 0}: overlap 1.
    assert metrics.top_k_overlap(scores, ACCURACIES, k=2).value == pytest.approx(0.5)
    # Only the full set contains it.
    assert metrics.top_k_overlap(scores, ACCURACIES, k=5).value == pytest.approx(4 / 5)


def test_top_k_drops_non_finite_accuracies():
    accuracies = list(ACCURACIES)
    accuracies[3] = np.nan
    # Remaining by accuracy: 0, 1, 2, 4, 5; by score: 0, 4, 2, 5, 1.
    # top-2: {0, 1} vs {0, 4} -> 1/2; top-3: {0, 1, 2} vs {0, 4, 2} -> 2/3.
    result = metrics.top_k_overlap(SCORES, accuracies, k=3)
    assert result.value == pytest.approx(2 / 3)
    assert (result.n, result.dropped) == (3, 1)
    # fraction is of the 5 with a finite accuracy: 0.4 * 5 = 2.
    assert metrics.top_k_overlap(SCORES, accuracies, fraction=0.4).value == pytest.approx(1 / 2)


def test_top_k_errors():
    with pytest.raises(ValueError, match="exactly one"):
        metrics.top_k_overlap(SCORES, ACCURACIES)
    with pytest.raises(ValueError, match="exactly one"):
        metrics.top_k_overlap(SCORES, ACCURACIES, k=2, fraction=0.5)
    with pytest.raises(ValueError, match="k must be"):
        metrics.top_k_overlap(SCORES, ACCURACIES, k=7)
    with pytest.raises(ValueError, match="k must be"):
        metrics.top_k_overlap(SCORES, ACCURACIES, k=0)
    with pytest.raises(ValueError, match="fraction"):
        metrics.top_k_overlap(SCORES, ACCURACIES, fraction=1.5)


# --- rank -------------------------------------------------------------------------------------


def test_rank_puts_every_non_finite_last_in_both_directions():
    scores = [3.0, np.nan, 1.0, np.inf, -np.inf, 2.0]
    # Finite: 3 > 2 > 1. The three non-finite share ranks 4, 5, 6 -> 5.
    np.testing.assert_array_equal(metrics.rank(scores), [1, 5, 3, 5, 5, 2])
    np.testing.assert_array_equal(metrics.rank(scores, descending=False), [3, 5, 1, 5, 5, 2])


def test_rank_ties_average():
    np.testing.assert_array_equal(metrics.rank([2.0, 2.0, 1.0, np.nan]), [1.5, 1.5, 3, 4])
    np.testing.assert_array_equal(metrics.rank([np.nan, np.nan]), [1.5, 1.5])


# --- partial correlation ----------------------------------------------------------------------


def _tau(u, v):
    return scipy.stats.kendalltau(u, v).statistic


def test_partial_correlation_matches_formula_on_finite_rows():
    rng = np.random.default_rng(5)
    z = rng.normal(size=80)
    x = z + rng.normal(size=80)
    y = np.round(z + rng.normal(size=80), 1)
    x[[2, 3]] = np.nan
    y[3] = np.inf
    z[[10, 11]] = -np.inf
    good = np.setdiff1d(np.arange(80), [2, 3, 10, 11])
    xy, xz, yz = _tau(x[good], y[good]), _tau(x[good], z[good]), _tau(y[good], z[good])
    expected = (xy - xz * yz) / math.sqrt((1 - xz**2) * (1 - yz**2))
    result = metrics.partial_correlation(x, y, z)
    assert result.value == pytest.approx(expected, abs=1e-12)
    assert (result.n, result.dropped) == (76, 4)


def test_partial_correlation_of_identical_variables_is_one():
    rng = np.random.default_rng(6)
    z = rng.normal(size=200)
    x = z + rng.normal(size=200)  # related to z, but not a function of it
    assert metrics.partial_correlation(x, x, z).value == pytest.approx(1.0)


def test_partial_correlation_removes_what_x_and_y_share_through_z():
    # x, y monotone functions of z plus independent noise. For Gaussians Kendall's tau is
    # (2/pi) arcsin(r), invariant under the monotone maps, which gives the population value.
    # It is not 0: partial Kendall tau does not vanish under conditional independence.
    rng = np.random.default_rng(7)
    n, noise = 2000, 0.5
    z = rng.normal(size=n)
    x = np.exp(z + rng.normal(scale=noise, size=n))
    y = (z + rng.normal(scale=noise, size=n)) ** 3
    r_xz = 1 / math.sqrt(1 + noise**2)
    tau_xz, tau_xy = (2 / math.pi * math.asin(r) for r in (r_xz, r_xz**2))
    population = (tau_xy - tau_xz**2) / (1 - tau_xz**2)  # about 0.185
    raw = metrics.kendall_tau(x, y).value
    partial = metrics.partial_correlation(x, y, z).value
    assert raw > 0.5
    assert partial == pytest.approx(population, abs=0.05)
    assert partial < raw / 2


def test_partial_correlation_near_zero_when_x_unrelated():
    rng = np.random.default_rng(8)
    z = rng.normal(size=2000)
    y = z + rng.normal(size=2000)
    x = rng.normal(size=2000)
    assert abs(metrics.partial_correlation(x, y, z).value) < 0.05


def test_partial_correlation_degenerate_gives_nan():
    z = np.arange(10.0)
    x = np.exp(z)  # tau_xz = 1: the denominator vanishes
    result = metrics.partial_correlation(x, np.sin(z), z)
    assert math.isnan(result.value) and result.n == 10
    result = metrics.partial_correlation([1.0, np.nan], [1.0, 2.0], [3.0, 4.0])
    assert math.isnan(result.value) and (result.n, result.dropped) == (1, 1)


# --- table ------------------------------------------------------------------------------------


def test_correlation_table_rows():
    accuracies = np.linspace(50, 90, 60)
    noisy, _ = _random_pair(9, n=60)
    noisy[[0, 5]] = np.nan
    rows = metrics.correlation_table(
        {"perfect": accuracies**2, "reversed": -accuracies, "noisy": noisy}, accuracies
    )
    assert [row["proxy"] for row in rows] == ["perfect", "reversed", "noisy"]
    perfect, reversed_, noisy_row = rows
    assert perfect["kendall"] == pytest.approx(1.0)
    assert perfect["top10pct"] == 1.0 and perfect["top50"] == 1.0
    # Top 6 of 60 (10%) by accuracy are the 6 worst by score: no overlap. Top 50 of 60:
    # 50 + 50 - 60 = 40 in common.
    assert reversed_["kendall"] == pytest.approx(-1.0)
    assert reversed_["spearman"] == pytest.approx(-1.0)
    assert reversed_["top10pct"] == 0.0
    assert reversed_["top50"] == pytest.approx(40 / 50)
    good = np.setdiff1d(np.arange(60), [0, 5])
    assert noisy_row["kendall"] == pytest.approx(_tau(noisy[good], accuracies[good]))
    assert noisy_row["spearman"] == pytest.approx(
        scipy.stats.spearmanr(noisy[good], accuracies[good]).statistic
    )
    assert (noisy_row["n"], noisy_row["dropped"]) == (58, 2)
    assert set(perfect) == {"proxy", "kendall", "spearman", "top10pct", "top50", "ndcg",
                            "top1_acc", "top10_mean_acc", "n", "dropped"}
    # linspace(50, 90, 60): step 40/59; the best ten are 90 - j * 40/59, j = 0..9.
    best_ten_mean = 90 - 4.5 * 40 / 59
    assert perfect["ndcg"] == pytest.approx(1.0)
    assert perfect["top1_acc"] == pytest.approx(90.0)
    assert perfect["top10_mean_acc"] == pytest.approx(best_ten_mean)
    assert reversed_["ndcg"] < 1.0
    assert reversed_["top1_acc"] == pytest.approx(50.0)
    assert reversed_["top10_mean_acc"] == pytest.approx(50 + 4.5 * 40 / 59)


def test_correlation_table_ndcg_nan_for_negative_accuracies_and_top10_needs_ten():
    (row,) = metrics.correlation_table({"p": [3.0, 2.0, 1.0]}, [-0.5, -0.2, -0.9])
    assert math.isnan(row["ndcg"]) and math.isnan(row["top10_mean_acc"])
    assert row["top1_acc"] == -0.5


def test_correlation_table_top50_needs_fifty_architectures():
    accuracies = np.arange(49.0)
    (row,) = metrics.correlation_table({"p": accuracies}, accuracies)
    assert math.isnan(row["top50"])
    assert row["top10pct"] == 1.0


# --- nDCG and the accuracy of the proxy's picks ----------------------------------------------


def _discount(position):
    return 1 / math.log2(position + 1)  # position 1 is not discounted


def test_ndcg_hand_computed():
    # The proxy ranks the accuracies in the order 1, 3, 2; the ideal order is 3, 2, 1.
    scores, accuracies = [0.9, 0.8, 0.1], [1.0, 3.0, 2.0]
    dcg = 1 * _discount(1) + 3 * _discount(2) + 2 * _discount(3)
    ideal = 3 * _discount(1) + 2 * _discount(2) + 1 * _discount(3)
    result = metrics.ndcg(scores, accuracies)
    assert result.value == pytest.approx(dcg / ideal)
    assert (result.n, result.dropped) == (3, 0) and math.isnan(result.pvalue)
    assert metrics.ndcg(scores, accuracies, k=1).value == pytest.approx(1 / 3)
    assert metrics.ndcg(scores, accuracies, k=2).value == pytest.approx(
        (1 + 3 * _discount(2)) / (3 + 2 * _discount(2)))
    # A cut deeper than the set is the whole set.
    assert metrics.ndcg(scores, accuracies, k=1000).value == pytest.approx(dcg / ideal)


def test_ndcg_perfect_is_one_reversed_is_less():
    accuracies = np.array([70.0, 93.5, 88.0, 91.0, 60.0])
    assert metrics.ndcg(accuracies, accuracies).value == pytest.approx(1.0)
    assert metrics.ndcg(np.exp(accuracies / 10), accuracies, k=2).value == pytest.approx(1.0)
    reversed_ = metrics.ndcg(-accuracies, accuracies).value
    ideal = sum(a * _discount(i) for i, a in enumerate([93.5, 91, 88, 70, 60], start=1))
    worst = sum(a * _discount(i) for i, a in enumerate([60, 70, 88, 91, 93.5], start=1))
    assert reversed_ == pytest.approx(worst / ideal) and reversed_ < 1.0
    # Getting the best network wrong costs more than getting the worst ones wrong.
    swap_top = metrics.ndcg([4, 5, 3, 2, 1], [93.5, 91, 88, 70, 60]).value
    swap_bottom = metrics.ndcg([5, 4, 3, 1, 2], [93.5, 91, 88, 70, 60]).value
    assert swap_top < swap_bottom < 1.0


def test_ndcg_ties_average_the_gains_of_the_tie():
    # Scores 1, 1 tie for the first two places: each gets the mean gain (3 + 1) / 2.
    dcg = 2 * _discount(1) + 2 * _discount(2) + 2 * _discount(3)
    ideal = 3 * _discount(1) + 2 * _discount(2) + 1 * _discount(3)
    assert metrics.ndcg([1, 1, 0], [3.0, 1.0, 2.0]).value == pytest.approx(dcg / ideal)
    assert metrics.ndcg([1, 0, 1], [1.0, 2.0, 3.0]).value == pytest.approx(dcg / ideal)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_ndcg_non_finite_scores_rank_last(bad):
    # The +inf (or NaN) score belongs to the best network, but it is not ranked first.
    dcg = 1 * _discount(1) + 2 * _discount(2) + 3 * _discount(3)
    ideal = 3 * _discount(1) + 2 * _discount(2) + 1 * _discount(3)
    result = metrics.ndcg([bad, 1.0, 0.0], [3.0, 1.0, 2.0])
    assert result.value == pytest.approx(dcg / ideal) and result.dropped == 0
    # Two non-finite scores tie among themselves, below every finite score.
    both = (2 * _discount(1) + 2 * _discount(2) + 2 * _discount(3)) / ideal
    assert metrics.ndcg([0.0, bad, np.nan], [2.0, 3.0, 1.0]).value == pytest.approx(both)


def test_ndcg_drops_non_finite_accuracies_and_degenerate_cases_are_nan():
    result = metrics.ndcg([3.0, 2.0, 1.0, 0.0], [np.nan, 1.0, 2.0, np.inf])
    dcg = 1 * _discount(1) + 2 * _discount(2)
    assert result.value == pytest.approx(dcg / (2 + 1 * _discount(2)))
    assert (result.n, result.dropped) == (2, 2)
    assert math.isnan(metrics.ndcg([1.0, 2.0], [0.0, 0.0]).value)
    empty = metrics.ndcg([1.0], [np.nan])
    assert math.isnan(empty.value) and (empty.n, empty.dropped) == (0, 1)


def test_ndcg_errors():
    with pytest.raises(ValueError, match="accuracies >= 0"):
        metrics.ndcg([1, 2], [0.5, -0.1])
    with pytest.raises(ValueError, match="k must be >= 1"):
        metrics.ndcg([1, 2], [1, 2], k=0)
    with pytest.raises(ValueError, match="length mismatch"):
        metrics.ndcg([1, 2, 3], [1, 2])


def test_top1_accuracy_hand_computed():
    result = metrics.top1_accuracy([0.2, 0.9, 0.5], [70.0, 60.0, 80.0])
    assert result.value == 60.0 and (result.n, result.dropped) == (1, 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_top1_never_picks_a_non_finite_score_before_a_finite_one(bad):
    assert metrics.top1_accuracy([bad, 0.1, np.nan], [99.0, 50.0, 98.0]).value == 50.0
    # With no finite score, every network ties for first.
    assert metrics.top1_accuracy([bad, np.nan], [99.0, 97.0]).value == 98.0


def test_top1_ties_give_the_mean_accuracy_whatever_the_order():
    assert metrics.top1_accuracy([1, 1, 0], [70.0, 80.0, 90.0]).value == 75.0
    assert metrics.top1_accuracy([0, 1, 1], [90.0, 80.0, 70.0]).value == 75.0


def test_topk_mean_accuracy_hand_computed():
    assert metrics.topk_mean_accuracy([5, 4, 3, 2, 1], [1, 2, 3, 4, 5.0], k=2).value == 1.5
    assert metrics.topk_mean_accuracy([5, 4, 3, 2, 1], [1, 2, 3, 4, 5.0], k=5).value == 3.0
    # Scores 2, 2 tie across the cut at k = 2: one place for the mean of 20 and 40.
    result = metrics.topk_mean_accuracy([3, 2, 2, 1], [10.0, 20.0, 40.0, 0.0], k=2)
    assert result.value == (10 + 30) / 2 and result.n == 2
    # Non-finite scores come after the finite ones, tied among themselves.
    result = metrics.topk_mean_accuracy([np.nan, 1, np.inf, 0], [9.0, 1.0, 8.0, 2.0], k=3)
    assert result.value == pytest.approx((1 + 2 + 8.5) / 3)


def test_top_accuracies_drop_non_finite_accuracies_and_check_k():
    result = metrics.top1_accuracy([3.0, 2.0, 1.0], [np.nan, 5.0, 6.0])
    assert result.value == 5.0 and result.dropped == 1
    none = metrics.topk_mean_accuracy([1.0, 2.0], [np.nan, np.nan], k=1)
    assert math.isnan(none.value) and (none.n, none.dropped) == (0, 2)
    with pytest.raises(ValueError, match=r"k must be in \[1, 2\]"):
        metrics.topk_mean_accuracy([1, 2, 3], [1, 2, np.nan], k=3)
    with pytest.raises(ValueError, match="k must be in"):
        metrics.topk_mean_accuracy([1, 2], [1, 2], k=0)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.kendall_tau([1, 2, 3], [1, 2]),
        lambda: metrics.spearman_rho([1, 2], [1, 2, 3]),
        lambda: metrics.top_k_overlap([1, 2, 3], [1, 2], k=1),
        lambda: metrics.partial_correlation([1, 2, 3], [1, 2, 3], [1, 2]),
        lambda: metrics.correlation_table({"p": [1, 2, 3]}, [1, 2]),
    ],
)
def test_length_mismatch_raises(call):
    with pytest.raises(ValueError, match="length mismatch"):
        call()


def test_length_mismatch_message_names_the_inputs():
    with pytest.raises(ValueError, match=r"scores\['snip'\] has 3, accuracies has 2"):
        metrics.correlation_table({"snip": [1, 2, 3]}, [1, 2])


def test_not_one_dimensional_raises():
    with pytest.raises(ValueError, match="1-D"):
        metrics.kendall_tau(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="1-D"):
        metrics.rank(np.ones((2, 2)))


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match="variant"):
        metrics.kendall_tau([1, 2], [1, 2], variant="a")
