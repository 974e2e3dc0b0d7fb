"""Zero-cost NAS search: find good architectures with and without accuracy queries.

Pure functions of a seeded key (:mod:`zcjax.search.algorithms`), a benchmark oracle that
counts the trained networks a search pays for (:mod:`zcjax.search.oracle`), zero-cost
preferences from any proxy or set-level ranking (:mod:`zcjax.search.ranking`), histories
stored per seed (:mod:`zcjax.search.experiment`) and their curves
(:mod:`zcjax.search.plot`). Zero-cost scores come from :class:`zcjax.bulk.StoredScorer`,
which scores each architecture once per run identity into a results store.
"""

from zcjax.search.algorithms import ALGORITHMS, evolution, generator, random_search, training_free
from zcjax.search.experiment import folder_name, label, run_seeds
from zcjax.search.history import History, curve, read_history, summary_table, write_history
from zcjax.search.oracle import Oracle, Queries, make_oracle
from zcjax.search.plot import plot_curves
from zcjax.search.ranking import TableScores, best_first, rank_average

__all__ = [
    "ALGORITHMS",
    "History",
    "Oracle",
    "Queries",
    "TableScores",
    "best_first",
    "curve",
    "evolution",
    "folder_name",
    "generator",
    "label",
    "make_oracle",
    "plot_curves",
    "random_search",
    "rank_average",
    "read_history",
    "run_seeds",
    "summary_table",
    "training_free",
    "write_history",
]
