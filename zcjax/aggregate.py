"""From per-layer quantities to network scores, and compositions of scores.

Saliency aggregation (per layer l with per-weight saliencies s in Theta_l):

- the baselines' plain sum: sum_l S_l, S_l = sum_{theta in Theta_l} s(theta);
- SSNR: sum_l S_l / sigma_l with sigma_l the std of the layer's saliencies (N-1, as the
  reference's ``torch.std``); a layer whose sigma is 0 or NaN contributes S_l;
- modes of the per-layer term: ``none``, ``log`` and ``log1p`` (non-finite results -> 0,
  as the reference's ``nan_to_num``), ``norm`` (every term divided by the population std
  of the terms across the architecture's layers, unless that std is 0).

T-CET is the layer-wise product of the SNR terms with the layer-wise log-determinants
(Lnwot), summed: both vectors are aligned with the network's layer table, so layer l of
one is layer l of the other by construction. Only active layers ever count.

References:
  Xiang et al., "Exploiting Network Compressibility and Topology in Zero-Cost NAS",
  AutoML-Conf 2023 (SSNR, T-CET). Chen et al., "Neural Architecture Search on ImageNet in
  Four GPU Hours" (TE-NAS rank averaging), ICLR 2021. Lee and Ham, "AZ-NAS: Assembling
  Zero-Cost Proxies for Network Architecture Search", CVPR 2024 (log-rank sum).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zcjax import metrics

Array = jax.Array
SNR_MODES = ("none", "log", "log1p", "norm")


def layer_snr(saliencies: Sequence[Array]) -> Array:
    """Per layer S_l / sigma_l (sigma with N-1); S_l where sigma is 0 or NaN. Shape (L,)."""

    def snr(values):
        values = values.reshape(-1)
        total = jnp.sum(values)
        sigma = jnp.std(values, ddof=1) if values.size > 1 else jnp.full((), jnp.nan, values.dtype)
        degenerate = (sigma == 0) | jnp.isnan(sigma)
        return jnp.where(degenerate, total, total / jnp.where(degenerate, 1, sigma))

    return jnp.stack([snr(s) for s in saliencies])


def snr_mode(terms: Array, active: Array, mode: str = "none") -> Array:
    """Apply an SSNR mode to per-layer terms; inactive layers come out 0.

    Args:
      terms: (L,) per-layer SNR terms.
      active: (L,) bool, the layers the architecture uses.
      mode: one of :data:`SNR_MODES`.
    """
    if mode not in SNR_MODES:
        raise ValueError(f"unknown SNR mode {mode!r}; valid modes: {', '.join(SNR_MODES)}")
    zero = jnp.zeros_like(terms)
    terms = jnp.where(active, terms, zero)
    if mode in ("log", "log1p"):
        # The reference takes the log elementwise, then maps NaN/inf to 0 (nan_to_num).
        logged = jnp.log(terms) if mode == "log" else jnp.log1p(terms)
        return jnp.where(active & jnp.isfinite(logged), logged, zero)
    if mode == "norm":
        count = jnp.sum(active)
        mean = jnp.sum(terms) / count
        spread = jnp.sqrt(jnp.sum(jnp.where(active, (terms - mean) ** 2, zero)) / count)
        return jnp.where(spread > 0, terms / jnp.where(spread > 0, spread, 1), terms)
    return terms


def ssnr(saliencies: Sequence[Array], active: Array, mode: str = "none") -> tuple[Array, Array]:
    """SSNR = sum over active layers of the (mode-transformed) S_l / sigma_l.

    Returns:
      (score, per-layer terms (L,), 0 for inactive layers).
    """
    terms = snr_mode(layer_snr(saliencies), active, mode)
    return jnp.sum(terms), terms


def layerwise_product(first: Array, second: Array, active: Array) -> tuple[Array, Array]:
    """sum_l first_l * second_l over active layers (T-CET's composition).

    Returns:
      (score, per-layer products (L,), 0 for inactive layers).
    """
    products = jnp.where(active, first * second, jnp.zeros_like(first * second))
    return jnp.sum(products), products


def tcet(saliencies: Sequence[Array], logdets: Array, active: Array,
         mode: str = "none") -> tuple[Array, Array]:
    """T-CET = sum_l (S_l / sigma_l, mode-transformed) * E_l, E_l the layer's log det."""
    terms = snr_mode(layer_snr(saliencies), active, mode)
    return layerwise_product(terms.astype(logdets.dtype), logdets, active)


# ---------------------------------------------------------------------------
# Compositions of network scores (arrays over architectures)
# ---------------------------------------------------------------------------
def rank_average(score_matrix) -> np.ndarray:
    """TE-NAS composition: the mean rank of each architecture over metrics (lower = better).

    Args:
      score_matrix: (metrics, architectures), higher = better for every metric;
        non-finite scores rank last within their metric (:func:`zcjax.metrics.rank`).
    """
    matrix = np.atleast_2d(np.asarray(score_matrix, np.float64))
    return np.mean([metrics.rank(row) for row in matrix], axis=0)


def az_nas_rank(score_matrix) -> np.ndarray:
    """AZ-NAS composition: sum over metrics of log(rank / N) per architecture (higher = better).

    Within each metric the N architectures are ranked 1..N in ascending order of score, ties
    sharing their average rank (:func:`scipy.stats.rankdata`'s default), so the best score
    gets rank N and log(N / N) = 0: an architecture that is best in every metric scores 0,
    every other one less. The log makes a low rank in any one metric hard to compensate.

    Non-finite scores rank LOWEST within their metric (tied among themselves, average rank),
    the mirror of :func:`zcjax.metrics.rank`: they add a large negative term instead of
    breaking the sum (the reference's rankdata would rank +inf best and spread NaN to every
    architecture). The value is a ranking of THIS set: adding or removing architectures changes
    every value, so compute it over the set being compared.

    Args:
      score_matrix: (metrics, architectures), higher = better for every metric (as for
        :func:`rank_average`); AZ-NAS's are expressivity, progressivity, trainability and
        FLOPs.

    Returns:
      float64 (architectures,), each <= 0; empty for no architectures.

    References:
      Lee and Ham, "AZ-NAS: Assembling Zero-Cost Proxies for Network Architecture Search",
      CVPR 2024 (the NB201 notebook's ``np.log(stats.rankdata(score) / l)`` summed).
    """
    matrix = np.atleast_2d(np.asarray(score_matrix, np.float64))
    count = matrix.shape[1]
    if count == 0:
        return np.zeros(0)
    # metrics.rank gives the best 1 and non-finite last; reversed, the best gets N and
    # non-finite scores the lowest ranks, with ties still averaged.
    ascending = [count + 1 - metrics.rank(row) for row in matrix]
    return np.sum(np.log(np.asarray(ascending) / count), axis=0)


def vkdnw_rank(score_matrix) -> np.ndarray:
    """VKDNW_agg: the AZ-NAS-style sum of log(rank / N), with VKDNW's own rank as one term.

    The first two rows are ``vkdnw_dim`` and ``vkdnw``: VKDNW ranks architectures by the
    pair (dim, entropy) lexicographically, the number of Fisher tensors first and the
    entropy within equal counts, as a DENSE rank (equal pairs share one rank, the next pair
    gets the next integer; the authors' ``rank(method="dense")`` of the tuple). The other
    rows enter as in :func:`az_nas_rank`; VKDNW_agg's are jacob_cov, AZ-NAS's expressivity
    and trainability, and FLOPs. Each term is divided by N so that, as for
    :func:`az_nas_rank`, an architecture best everywhere scores 0 (the authors' log(rank)
    differs by the constant log N per term, which changes no ranking).

    A pair with a non-finite member ranks lowest (dense rank 1, below every finite pair,
    tied among themselves), as non-finite scores do in :func:`az_nas_rank`.

    Args:
      score_matrix: (2 + metrics, architectures): ``vkdnw_dim``, ``vkdnw``, then the
        higher-is-better metrics.

    Returns:
      float64 (architectures,), each <= 0; empty for no architectures.

    Raises:
      ValueError: fewer than two rows.

    References:
      Tybl and Neumann, "Training-free Neural Architecture Search through Variance of
      Knowledge of Deep Network Weights", CVPR 2025 (NB201/tss_utils.py, ``vkdnw_comb_rank``).
    """
    matrix = np.atleast_2d(np.asarray(score_matrix, np.float64))
    if matrix.shape[0] < 2:
        raise ValueError(f"vkdnw_rank needs the rows vkdnw_dim and vkdnw first, got "
                         f"{matrix.shape[0]} row(s)")
    count = matrix.shape[1]
    if count == 0:
        return np.zeros(0)
    dims, entropies = matrix[0], matrix[1]
    finite = np.isfinite(dims) & np.isfinite(entropies)
    pairs = np.stack([dims[finite], entropies[finite]], axis=1)
    dense = np.ones(count)
    if pairs.size:
        # np.unique sorts rows lexicographically; inverse + 1 is each pair's dense rank among
        # the finite pairs, shifted above the shared rank 1 of the non-finite ones.
        _, inverse = np.unique(pairs, axis=0, return_inverse=True)
        dense[finite] = inverse.reshape(-1) + 1 + (not finite.all())
    own = np.log(dense / count)
    rest = az_nas_rank(matrix[2:]) if matrix.shape[0] > 2 else np.zeros(count)
    return own + rest


ZCJAX_COMPOSITION = ("meco_opt", "tcet_snip", "jacob_cov", "swap", "az_trainability", "meco")
"""zcjax's composition: :func:`az_nas_rank` (the sum of log(rank / N)) of these proxies.

Chosen once, by ``bench/compose_nb201.py``'s rule fixed beforehand (greedy forward
selection from its candidates, stopping below a Kendall tau gain of 0.005), on
NB201 validation accuracy (``cifar10valid_valid_nb201v1``) of the seeded 1000-architecture
selection sample scored on CIFAR-10 images, and frozen in ``bench/composition.json``; it is
reported on test accuracy of architectures disjoint from that sample (``bench/SOTA.md``).
As a row of :func:`zcjax.correlate`::

    correlate(results, benchmark, dataset,
              aggregates={"zcjax_composition": ("az_nas", list(ZCJAX_COMPOSITION))})
"""


def score_product(score_matrix) -> np.ndarray:
    """The product of network scores across metrics, per architecture (NaN propagates)."""
    return np.prod(np.atleast_2d(np.asarray(score_matrix, np.float64)), axis=0)
