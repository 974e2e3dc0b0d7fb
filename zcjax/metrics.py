"""Rank agreement between proxy scores and accuracies, NaN-aware.

A zero-cost proxy is judged by how well its ranking of architectures agrees with the ranking by
trained accuracy. This module measures that agreement:

* :func:`kendall_tau` and :func:`spearman_rho`: rank correlations (via :mod:`scipy.stats`).
* :func:`top_k_overlap`: the share of the best-k architectures by accuracy that the proxy also
  puts in its top k.
* :func:`ndcg`: VKDNW's normalised discounted cumulative gain, which rewards ranking the most
  accurate architectures first.
* :func:`top1_accuracy` and :func:`topk_mean_accuracy`: the accuracy of the architecture the
  proxy ranks first, and the mean accuracy of its top k (what a search would get).
* :func:`partial_correlation`: the paper's partial Kendall correlation rho_XY.Z, used to find
  pairs of proxies that carry different information given the accuracy.
* :func:`rank`: ranks 1..n with non-finite scores last, for rank aggregation.
* :func:`correlation_table`: all of the above for several proxies at once, as plain rows.

Non-finite scores (NaN, +-inf) are results, not errors: a proxy that overflows on an
architecture has said something about it. They are never replaced by a magic number. Every
function that correlates two vectors drops the pairs where either value is non-finite and
reports how many it dropped (:attr:`Correlation.dropped`); rankings of the whole set
(:func:`rank`, :func:`top_k_overlap`, :func:`ndcg`, :func:`top1_accuracy`,
:func:`topk_mean_accuracy`) put non-finite scores last instead.

Fewer than two usable pairs, or a constant vector, give a value of NaN (with ``n`` and
``dropped`` still reported) rather than an exception, so that one degenerate proxy does not stop
a table of many. Malformed input (not 1-D, lengths that differ, bad options) raises ValueError.

References:
  Exploiting Network Compressibility and Topology in Zero-Cost NAS (SSNR, Lnwot, T-CET);
  section "Partial correlation" for :func:`partial_correlation`.
  Tybl and Neumann, "Training-free Neural Architecture Search through Variance of Knowledge
  of Deep Network Weights" (VKDNW), CVPR 2025, for :func:`ndcg` and the top-1 accuracy.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

__all__ = [
    "Correlation",
    "correlation_table",
    "kendall_tau",
    "ndcg",
    "partial_correlation",
    "rank",
    "spearman_rho",
    "top1_accuracy",
    "top_k_overlap",
    "topk_mean_accuracy",
]


@dataclasses.dataclass(frozen=True)
class Correlation:
    """An agreement statistic together with how much data it rests on.

    Attributes:
      value: the statistic; NaN when it is undefined (fewer than two usable pairs, a constant
        vector, a partial correlation whose conditioning tau is +-1).
      n: number of pairs used. For :func:`top_k_overlap`, the k of the overlap.
      dropped: number of pairs dropped because a value was non-finite.
      pvalue: scipy's two-sided p-value where one exists, else NaN.
    """

    value: float
    n: int
    dropped: int
    pvalue: float = math.nan

    def __float__(self) -> float:
        return float(self.value)


def _vector(name: str, values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def _vectors(**named: ArrayLike) -> list[np.ndarray]:
    arrays = [_vector(name, values) for name, values in named.items()]
    lengths = {name: len(a) for name, a in zip(named, arrays)}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise ValueError(f"length mismatch: {described}")
    return arrays


def _finite_rows(*arrays: np.ndarray) -> tuple[list[np.ndarray], int]:
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    return [a[keep] for a in arrays], int(keep.size - keep.sum())


def _quietly(statistic, *args, **kwargs):
    # A constant vector has no rank correlation; NaN is the documented answer, not a warning
    # per proxy in a table.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.ConstantInputWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return statistic(*args, **kwargs)


def kendall_tau(scores: ArrayLike, accuracies: ArrayLike, *, variant: str = "b") -> Correlation:
    """Kendall rank correlation between scores and accuracies, on the finite pairs.

    Args:
      scores: proxy scores, shape ``[n]``; non-finite entries drop their pair.
      accuracies: accuracies (or any second variable), shape ``[n]``; non-finite entries drop
        their pair.
      variant: ``"b"`` (tau-b, adjusted for ties; what the NAS literature reports) or ``"c"``.

    Returns:
      The tau on the finite pairs, with ``n`` pairs used and ``dropped`` pairs dropped. NaN when
      fewer than two pairs remain or either vector is constant on them.

    Raises:
      ValueError: inputs not 1-D or of different lengths, or an unknown variant.
    """
    if variant not in ("b", "c"):
        raise ValueError(f"variant must be 'b' or 'c', got {variant!r}")
    x, y = _vectors(scores=scores, accuracies=accuracies)
    (x, y), dropped = _finite_rows(x, y)
    if len(x) < 2:
        return Correlation(math.nan, len(x), dropped)
    result = _quietly(scipy.stats.kendalltau, x, y, variant=variant)
    return Correlation(float(result.statistic), len(x), dropped, float(result.pvalue))


def spearman_rho(scores: ArrayLike, accuracies: ArrayLike) -> Correlation:
    """Spearman rank correlation between scores and accuracies, on the finite pairs.

    Args:
      scores: proxy scores, shape ``[n]``; non-finite entries drop their pair.
      accuracies: accuracies, shape ``[n]``; non-finite entries drop their pair.

    Returns:
      The rho on the finite pairs, with ``n`` pairs used and ``dropped`` pairs dropped. NaN when
      fewer than two pairs remain or either vector is constant on them.

    Raises:
      ValueError: inputs not 1-D or of different lengths.
    """
    x, y = _vectors(scores=scores, accuracies=accuracies)
    (x, y), dropped = _finite_rows(x, y)
    if len(x) < 2:
        return Correlation(math.nan, len(x), dropped)
    result = _quietly(scipy.stats.spearmanr, x, y)
    return Correlation(float(result.statistic), len(x), dropped, float(result.pvalue))


def rank(scores: ArrayLike, *, descending: bool = True) -> np.ndarray:
    """Ranks 1..n of the scores, best first, with every non-finite score ranked last.

    NaN, +inf and -inf all rank last in either direction: a score that overflowed is not the
    best architecture. Ties (non-finite ones among themselves included) share the average of
    the ranks they span, as :func:`scipy.stats.rankdata` does.

    Args:
      scores: shape ``[n]``.
      descending: if True the highest finite score gets rank 1, else the lowest does.

    Returns:
      float64 ranks, shape ``[n]``.

    Raises:
      ValueError: scores not 1-D.
    """
    x = _vector("scores", scores)
    finite = np.isfinite(x)
    ranks = np.empty_like(x)
    ranks[finite] = scipy.stats.rankdata(-x[finite] if descending else x[finite])
    num_finite = int(finite.sum())
    ranks[~finite] = (num_finite + 1 + x.size) / 2
    return ranks


def _top(values: np.ndarray, k: int) -> np.ndarray:
    # Stable sort: ties at the cut are broken by position, so the result is deterministic.
    return np.argsort(-values, kind="stable")[:k]


def top_k_overlap(
    scores: ArrayLike,
    accuracies: ArrayLike,
    *,
    k: int | None = None,
    fraction: float | None = None,
) -> Correlation:
    """Share of the top-k architectures by accuracy that are also in the top k by score.

    Unlike the correlations, this ranks the whole set, so a non-finite score is not dropped:
    it counts as the worst score (ranked last), because the proxy failed to put that
    architecture anywhere near the top. An architecture with a non-finite accuracy cannot be
    placed in the reference ranking, so its pair is dropped and counted in ``dropped``. Ties
    at the cut, by score or by accuracy, are broken by position in the input.

    Args:
      scores: proxy scores, shape ``[n]``; higher is better.
      accuracies: accuracies, shape ``[n]``; higher is better.
      k: size of the top set. Exactly one of ``k`` and ``fraction``.
      fraction: size of the top set as a share of the architectures with a finite accuracy,
        rounded up (``fraction=0.1`` is the top 10%; at least one architecture).

    Returns:
      ``value`` the overlap in [0, 1], ``n`` = k, ``dropped`` the pairs with a non-finite
      accuracy; ``pvalue`` NaN. Value NaN (and n 0) when no accuracy is finite.

    Raises:
      ValueError: inputs not 1-D or of different lengths; not exactly one of k and fraction;
        k < 1 or larger than the number of finite accuracies; fraction outside (0, 1].
    """
    if (k is None) == (fraction is None):
        raise ValueError("give exactly one of k and fraction")
    s, a = _vectors(scores=scores, accuracies=accuracies)
    keep = np.isfinite(a)
    s, a = s[keep], a[keep]
    dropped = int(keep.size - keep.sum())
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if len(a) == 0:
            return Correlation(math.nan, 0, dropped)
        # Round before ceil so that 0.1 * 70 = 7.000000000000001 is 7, not 8.
        k = max(1, math.ceil(round(fraction * len(a), 9)))
    if not 1 <= k <= len(a):
        raise ValueError(f"k must be in [1, {len(a)}] (finite accuracies), got {k}")
    by_score = _top(np.where(np.isfinite(s), s, -np.inf), k)
    by_accuracy = _top(a, k)
    overlap = np.intersect1d(by_score, by_accuracy).size
    return Correlation(overlap / k, k, dropped)



def _finite_accuracies(scores: ArrayLike, accuracies: ArrayLike):
    """Scores (non-finite -> -inf, so they tie among themselves below every finite score) and
    accuracies of the pairs with a finite accuracy, and how many pairs were dropped."""
    s, a = _vectors(scores=scores, accuracies=accuracies)
    keep = np.isfinite(a)
    s = np.where(np.isfinite(s[keep]), s[keep], -np.inf)
    return s, a[keep], int(keep.size - keep.sum())


def _tie_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions sorted by descending score, and the start of each run of equal scores in
    that order (plus the end), so that ties can be averaged instead of broken by position."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    return order, np.r_[starts, len(ranked)]


def _tie_averaged_sum(scores: np.ndarray, values: np.ndarray, weights: np.ndarray) -> float:
    """sum_i weights[i] * values at sorted position i, with the values of tied scores replaced
    by their mean: the expectation over every order of the ties (McSherry and Najork 2008)."""
    order, bounds = _tie_groups(scores)
    ranked = values[order]
    return float(sum(ranked[lo:hi].mean() * weights[lo:hi].sum()
                     for lo, hi in zip(bounds[:-1], bounds[1:])))


def ndcg(scores: ArrayLike, accuracies: ArrayLike, *, k: int | None = None) -> Correlation:
    """Normalised discounted cumulative gain of the proxy's ranking, VKDNW's definition.

    DCG@k = sum over the proxy's ranks i = 1..k of acc_(i) / log2(i + 1), with acc_(i) the
    accuracy of the architecture the proxy ranks i-th (the gain is the accuracy itself, not
    2^acc - 1, nor a rank); nDCG@k = DCG@k / IDCG@k, IDCG the DCG of the ranking by accuracy.
    This is :func:`sklearn.metrics.ndcg_score` with ``y_true`` the accuracies and ``y_score``
    the proxy's scores, which is how the VKDNW code computes it (NB201/tss_utils.py,
    ``get_metrics``; its commits use k=20 and k=5000). 1 for a ranking that agrees with the
    accuracy order on the top k; it rewards finding the best networks, unlike Kendall's tau.

    Ties in the scores are averaged as scikit-learn does: each tied architecture gets the mean
    gain of its tie group, so the value does not depend on the input order. Non-finite scores
    are not dropped: they rank below every finite score, tied among themselves (the proxy did
    not put them near the top). Pairs with a non-finite accuracy are dropped.

    Args:
      scores: proxy scores, shape ``[n]``; higher is better.
      accuracies: accuracies, shape ``[n]``; the gains, so they must be >= 0 where finite.
      k: depth of the cut-off; None (default) ranks them all. A k larger than the number of
        finite accuracies means all of them.

    Returns:
      ``value`` in [0, 1], ``n`` the architectures ranked (finite accuracies), ``dropped``
      the pairs with a non-finite accuracy; ``pvalue`` NaN. NaN when no accuracy is finite or
      all are 0 (the ideal DCG is 0).

    Raises:
      ValueError: inputs not 1-D or of different lengths; k < 1; a negative finite accuracy
        (the gain of a network cannot be negative; shift such a metric first).

    References:
      Tybl and Neumann, "Training-free Neural Architecture Search through Variance of
      Knowledge of Deep Network Weights", CVPR 2025 (https://github.com/ondratybl/VKDNW).
      Jarvelin and Kekalainen, "Cumulated gain-based evaluation of IR techniques", TOIS 2002.
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    s, a, dropped = _finite_accuracies(scores, accuracies)
    if np.any(a < 0):
        raise ValueError(f"ndcg needs accuracies >= 0 (they are the gains), got {a.min()}")
    n = len(a)
    depth = n if k is None else min(k, n)
    discounts = np.zeros(n)
    discounts[:depth] = 1 / np.log2(np.arange(2, depth + 2))
    ideal = float(np.sort(a)[::-1] @ discounts)
    if n == 0 or ideal == 0:
        return Correlation(math.nan, n, dropped)
    return Correlation(_tie_averaged_sum(s, a, discounts) / ideal, n, dropped)


def topk_mean_accuracy(scores: ArrayLike, accuracies: ArrayLike, *, k: int = 10) -> Correlation:
    """Mean accuracy of the k architectures the proxy ranks highest.

    What a search that trains the proxy's top k would find on average. Non-finite scores rank
    below every finite score (never picked before a finite one); pairs with a non-finite
    accuracy are dropped (the architecture cannot be evaluated). Ties in the scores at the cut
    are averaged, not broken by position: a tie group that straddles the k-th place
    contributes its mean accuracy for each place it fills, the expectation over a random
    order of the tie, so the result is deterministic and independent of the input order.

    Args:
      scores: proxy scores, shape ``[n]``; higher is better.
      accuracies: accuracies, shape ``[n]``.
      k: how many top architectures.

    Returns:
      ``value`` the mean accuracy, ``n`` = k, ``dropped`` the pairs with a non-finite
      accuracy; ``pvalue`` NaN. NaN (and n 0) when no accuracy is finite.

    Raises:
      ValueError: inputs not 1-D or of different lengths; k < 1 or larger than the number of
        finite accuracies.

    References:
      Tybl and Neumann, VKDNW, CVPR 2025 (the reference code reports the top-1 and the
      mean of the top 50).
    """
    s, a, dropped = _finite_accuracies(scores, accuracies)
    if len(a) == 0:
        return Correlation(math.nan, 0, dropped)
    if not 1 <= k <= len(a):
        raise ValueError(f"k must be in [1, {len(a)}] (finite accuracies), got {k}")
    slots = (np.arange(len(a)) < k).astype(np.float64)
    return Correlation(_tie_averaged_sum(s, a, slots) / k, k, dropped)


def top1_accuracy(scores: ArrayLike, accuracies: ArrayLike) -> Correlation:
    """Accuracy of the architecture the proxy ranks first (VKDNW's top-1 accuracy).

    :func:`topk_mean_accuracy` with k = 1: if several architectures tie for the highest score,
    the value is their mean accuracy (the expectation of picking one of them at random).
    Non-finite scores are picked only when no score is finite; pairs with a non-finite
    accuracy are dropped.

    Returns:
      ``value`` the accuracy, ``n`` 1, ``dropped`` the pairs with a non-finite accuracy. NaN
      (and n 0) when no accuracy is finite.

    Raises:
      ValueError: inputs not 1-D or of different lengths.
    """
    return topk_mean_accuracy(scores, accuracies, k=1)


_TAU_EPS = 1e-12


def partial_correlation(x: ArrayLike, y: ArrayLike, z: ArrayLike) -> Correlation:
    """Partial Kendall correlation of x and y given z, as the paper defines it.

    rho_XY.Z = (rho_XY - rho_XZ rho_YZ) / sqrt((1 - rho_XZ^2)(1 - rho_YZ^2)), every rho a
    Kendall tau-b, all three computed on the same rows: those where x, y and z are all finite.
    With z the accuracy, a low value means two proxies rank architectures differently beyond
    what they share through accuracy ("orthogonal" proxies, which compose well).

    Note that the partial Kendall tau is a descriptive statistic, not a test of conditional
    independence: it is generally not 0 when x and y are independent given z.

    Args:
      x: first variable (e.g. one proxy's scores), shape ``[n]``.
      y: second variable, shape ``[n]``.
      z: the variable conditioned on (typically the accuracy), shape ``[n]``.

    Returns:
      rho_XY.Z with ``n`` rows used and ``dropped`` rows dropped (any of x, y, z non-finite);
      ``pvalue`` NaN. Value NaN when fewer than two rows remain, any tau is undefined, or
      |rho_XZ| or |rho_YZ| is 1 (the denominator vanishes).

    Raises:
      ValueError: inputs not 1-D or of different lengths.

    References:
      Exploiting Network Compressibility and Topology in Zero-Cost NAS, "Partial correlation".
    """
    x, y, z = _vectors(x=x, y=y, z=z)
    (x, y, z), dropped = _finite_rows(x, y, z)
    n = len(x)
    if n < 2:
        return Correlation(math.nan, n, dropped)
    tau_xy, tau_xz, tau_yz = (
        float(_quietly(scipy.stats.kendalltau, u, v).statistic) for u, v in ((x, y), (x, z), (y, z))
    )
    # scipy returns 0.9999999999999999 for a perfect tau; dividing by its rounding error would
    # report noise as a value. The comparison is also False for a NaN tau.
    if not (abs(tau_xz) < 1 - _TAU_EPS and abs(tau_yz) < 1 - _TAU_EPS and math.isfinite(tau_xy)):
        return Correlation(math.nan, n, dropped)
    denominator = math.sqrt((1 - tau_xz**2) * (1 - tau_yz**2))
    return Correlation((tau_xy - tau_xz * tau_yz) / denominator, n, dropped)


def correlation_table(
    scores: Mapping[str, ArrayLike], accuracies: ArrayLike
) -> list[dict[str, Any]]:
    """Agreement of several proxies with the same accuracies, one row per proxy.

    Plain rows keep pandas optional; ``pandas.DataFrame(correlation_table(...))`` makes a frame.

    Args:
      scores: proxy name -> scores, each shape ``[n]`` aligned with ``accuracies``.
      accuracies: shape ``[n]``.

    Returns:
      One dict per proxy, in the mapping's order, with keys ``proxy``, ``kendall`` (tau-b),
      ``spearman``, ``top10pct`` (overlap of the top 10%), ``top50`` (overlap of the top 50;
      NaN when fewer than 50 accuracies are finite), ``ndcg`` (:func:`ndcg` over all; NaN
      when an accuracy is negative), ``top1_acc`` (:func:`top1_accuracy`), ``top10_mean_acc``
      (:func:`topk_mean_accuracy`, k = 10; NaN when fewer than 10 accuracies are finite),
      ``n`` (pairs used by the correlations) and ``dropped`` (pairs dropped as non-finite).
      See :func:`top_k_overlap` for how the overlaps, nDCG and top-k accuracies treat
      non-finite scores.

    Raises:
      ValueError: a score vector not 1-D or of a different length from ``accuracies``.
    """
    a = _vector("accuracies", accuracies)
    finite_accuracies = int(np.isfinite(a).sum())
    # nDCG's gains are the accuracies; a negative task metric has no nDCG, but one odd column
    # must not stop the table.
    gains_valid = not np.any(a[np.isfinite(a)] < 0)
    rows = []
    for name, values in scores.items():
        s, _ = _vectors(**{f"scores[{name!r}]": values, "accuracies": a})
        kendall = kendall_tau(s, a)
        rows.append(
            {
                "proxy": name,
                "kendall": kendall.value,
                "spearman": spearman_rho(s, a).value,
                "top10pct": top_k_overlap(s, a, fraction=0.1).value,
                "top50": top_k_overlap(s, a, k=50).value if finite_accuracies >= 50 else math.nan,
                "ndcg": ndcg(s, a).value if gains_valid else math.nan,
                "top1_acc": top1_accuracy(s, a).value,
                "top10_mean_acc": (topk_mean_accuracy(s, a, k=10).value
                                   if finite_accuracies >= 10 else math.nan),
                "n": kendall.n,
                "dropped": kendall.dropped,
            }
        )
    return rows
