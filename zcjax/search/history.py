"""What a search did: its paid queries in order, what it scored for free, what it picked.

A :class:`History` is plain data (JSON round trip), so a finished seed is stored once
and a resumed experiment reads it back instead of searching again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zcjax import store


@dataclasses.dataclass(frozen=True)
class History:
    """One seeded search.

    Attributes:
      algorithm: ``training_free``, ``random`` or ``evolution``.
      seed: the search's seed (its draws; the proxies' initialisation is separate).
      settings: the algorithm's hyperparameters and the proxies it ranked by.
      queried: the architectures whose accuracy the search paid for, in query order
        (distinct: asking again is free).
      accuracies: what each query revealed (the oracle's ``dataset`` column).
      reported: the oracle's ``report`` column of each queried architecture.
      scored: distinct architectures whose zero-cost scores the search read (free).
      non_finite: how many of those had a non-finite score (ranked last).
      pick: the search's answer: the best queried architecture (by ``accuracies``), or
        for training-free search the best-ranked one.
      pick_reported: the ``report`` value of ``pick`` (NaN without an oracle).
      top: training-free search: the ``top_k`` best-ranked architectures, best first.
    """

    algorithm: str
    seed: int
    settings: Mapping[str, Any]
    queried: tuple[str, ...]
    accuracies: tuple[float, ...]
    reported: tuple[float, ...]
    scored: int
    non_finite: int
    pick: str
    pick_reported: float
    top: tuple[str, ...] = ()

    @property
    def queries(self) -> int:
        """Paid queries."""
        return len(self.queried)

    def best_so_far(self) -> np.ndarray:
        """After each query q = 1..queries: the ``report`` value of the best network so far.

        "Best" is by what the search sees (``accuracies``); the first of equals wins.
        """
        accuracies = np.asarray(self.accuracies, np.float64)
        if not len(accuracies):
            return np.empty(0)
        best = np.zeros(len(accuracies), int)
        for q in range(1, len(accuracies)):
            best[q] = q if accuracies[q] > accuracies[best[q - 1]] else best[q - 1]
        return np.asarray(self.reported, np.float64)[best]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> History:
        fields = json.loads(text)
        for name in ("queried", "accuracies", "reported", "top"):
            fields[name] = tuple(fields[name])
        return cls(**fields)


def write_history(path: str | os.PathLike, history: History) -> Path:
    """Write a history atomically (temporary file, rename): a reader sees all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return store.write_atomically(path, lambda sink: sink.write(history.to_json().encode()))


def read_history(path: str | os.PathLike) -> History:
    return History.from_json(Path(path).read_text())


def curve(histories: Sequence[History], budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over seeds of the best-so-far curve, queries 1..budget.

    A history that stopped early (its universe ran out of new architectures) keeps its
    last value.
    """
    curves = []
    for history in histories:
        values = history.best_so_far()[:budget]
        if len(values) == 0:
            raise ValueError(f"a {history.algorithm} history has no queries to plot")
        curves.append(np.concatenate([values, np.full(budget - len(values), values[-1])]))
    curves = np.asarray(curves)
    return curves.mean(axis=0), curves.std(axis=0)


def summary_table(groups: Mapping[str, Sequence[History]], budgets: Sequence[int]) -> pd.DataFrame:
    """Mean and std over seeds of the reported accuracy of the best network found.

    One row per group (an algorithm and its settings); for searches that query, one pair
    of columns per budget (best so far after that many queries, NaN past a search's own
    budget); for training-free search the pick, in the ``pick`` columns.
    """
    rows = []
    for label, histories in groups.items():
        row: dict[str, Any] = {"search": label, "seeds": len(histories)}
        picks = np.asarray([h.pick_reported for h in histories], np.float64)
        row["pick_mean"], row["pick_std"] = float(np.mean(picks)), float(np.std(picks))
        queried = max(h.queries for h in histories)
        for budget in budgets:
            if queried == 0 or budget > queried:
                row[f"q{budget}_mean"] = row[f"q{budget}_std"] = math.nan
                continue
            mean, std = curve(histories, budget)
            row[f"q{budget}_mean"], row[f"q{budget}_std"] = float(mean[-1]), float(std[-1])
        rows.append(row)
    return pd.DataFrame(rows).set_index("search")
