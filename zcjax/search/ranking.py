"""Zero-cost preferences among candidate architectures, from one proxy or several.

A search never needs a score's scale, only which of some candidates is best: the pick of
a training-free search, the warm-up's initial population, the child a move proposal
queries. So the search takes a score source (``archs -> (archs, proxies)`` values, e.g.
:class:`zcjax.bulk.StoredScorer` or :class:`TableScores`) and a ``combine`` rule that
turns a candidate set's value matrix into ranks. The default, :func:`rank_average`, is
the proxy itself for one proxy and the TE-NAS / AZ-NAS mean rank for several; any
set-level ranking with the same signature plugs in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from zcjax import aggregate

Combine = Callable[[np.ndarray], np.ndarray]


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks (1 = best) of candidates from their (candidates, proxies) scores.

    Each proxy ranks the candidates (higher is better, non-finite last,
    :func:`zcjax.metrics.rank`); a candidate's rank is the mean over proxies.
    """
    return aggregate.rank_average(np.asarray(values, np.float64).T)


def best_first(values: np.ndarray, combine: Combine = rank_average) -> np.ndarray:
    """Candidate positions, best first; equal ranks keep the candidates' order."""
    ranks = np.asarray(combine(np.asarray(values, np.float64)), np.float64)
    if ranks.shape != (len(values),):
        raise ValueError(f"a ranking must return one rank per candidate ({len(values)}), "
                         f"got shape {ranks.shape}")
    return np.argsort(ranks, kind="stable")


class TableScores:
    """Precomputed scores as a score source (e.g. a benchmark's reference proxy scores).

    Args:
      table: a DataFrame indexed by arch string with one column per proxy, or a Series
        (one proxy, named by the Series' name).

    Raises:
      KeyError (on call): an architecture the table has no row for.
    """

    def __init__(self, table: pd.DataFrame | pd.Series):
        frame = table.to_frame() if isinstance(table, pd.Series) else table
        self.proxies = tuple(str(column) for column in frame.columns)
        self._values: Mapping[str, np.ndarray] = dict(
            zip(frame.index, frame.to_numpy(np.float64)))

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        missing = [arch for arch in archs if arch not in self._values]
        if missing:
            raise KeyError(f"no precomputed {', '.join(self.proxies)} score for "
                           f"{len(missing)} architecture(s), e.g. {missing[0]!r}")
        return np.asarray([self._values[arch] for arch in archs], np.float64).reshape(
            len(archs), len(self.proxies))
