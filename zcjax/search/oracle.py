"""The benchmark oracle: trained accuracies a search pays for, one query at a time.

In NAS the cost unit is a trained network. A tabular benchmark stands in for training:
the oracle returns an architecture's accuracy from the table, and the search counts every
distinct architecture it asks about (:class:`Queries`). An architecture asked about again
costs nothing: its accuracy is already known, as a real search would keep it.

Two metrics may differ: the ``dataset`` column is what a query reveals and what the search
selects on; the ``report`` column (default the same) is what the history reports for the
best-so-far network. Selecting on validation and reporting test (NB201's
``cifar10-valid`` / ``cifar10-valid-test``) is the careful protocol; NB201's
CIFAR-100 and ImageNet16-120 columns hold test accuracies only, so there a search selects
on the metric it reports, as NASWOT's and most published NB201 search tables do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from zcjax import benchmarks as benchmarks_lib
from zcjax.space import SearchSpace, get_space

# Benchmark architectures checked against the space before a search starts.
_COVERAGE_SAMPLE = 20


@dataclasses.dataclass(frozen=True)
class Oracle:
    """Accuracies of one benchmark table on one dataset, over the architectures it covers.

    Build it with :func:`make_oracle`.

    Attributes:
      benchmark: the benchmark's name.
      dataset: the column a query reveals (and a search selects on).
      report: the column reported for the networks found.
      archs: the architectures with a value in both columns, in the table's order: the
        universe a search draws from.
      optimum: the best ``report`` value over ``archs``.
    """

    benchmark: str
    dataset: str
    report: str
    archs: tuple[str, ...]
    optimum: float
    _accuracy: Mapping[str, float] = dataclasses.field(repr=False)
    _reported: Mapping[str, float] = dataclasses.field(repr=False)

    def __contains__(self, arch: str) -> bool:
        return arch in self._accuracy

    def accuracy(self, arch: str) -> float:
        """What training ``arch`` reveals (the ``dataset`` column): the paid query.

        Raises:
          KeyError: the benchmark has no value for ``arch``.
        """
        if arch not in self._accuracy:
            raise KeyError(f"benchmark {self.benchmark!r} has no {self.dataset} accuracy "
                           f"for {arch!r}")
        return self._accuracy[arch]

    def reported(self, arch: str) -> float:
        """The ``report`` column of ``arch``, for reporting only (not a query)."""
        if arch not in self._reported:
            raise KeyError(f"benchmark {self.benchmark!r} has no {self.report} value for "
                           f"{arch!r}")
        return self._reported[arch]


def make_oracle(benchmark: benchmarks_lib.Benchmark | str, space: str | SearchSpace,
                dataset: str, *, report: str | None = None) -> Oracle:
    """The oracle of a benchmark table for a search in ``space``.

    Args:
      benchmark: a :class:`zcjax.benchmarks.Benchmark`, or a name or path for
        :func:`zcjax.benchmarks.load_benchmark`.
      space: the search space the benchmark's architectures belong to.
      dataset: the accuracy column a query reveals.
      report: the column reported for the networks found (default ``dataset``).

    Raises:
      KeyError: the benchmark has no such dataset (the message lists them).
      ValueError: the benchmark's architectures are not architectures of ``space``, or it
        has no architecture with both values.
    """
    space = get_space(space)
    if not isinstance(benchmark, benchmarks_lib.Benchmark):
        benchmark = benchmarks_lib.load_benchmark(benchmark, space=space.name)
    select = benchmark.column(dataset)
    report = benchmark.column(report if report is not None else dataset)
    both = benchmark.accuracies[list(dict.fromkeys([select, report]))].dropna()
    if both.empty:
        raise ValueError(f"benchmark {benchmark.name!r} has no architecture with both "
                         f"{select} and {report} values")
    sample = both.index[np.linspace(0, len(both) - 1, min(_COVERAGE_SAMPLE, len(both)),
                                    dtype=int)]
    for arch in sample:
        try:
            canonical = space.decode(space.check_arch(arch))
        except ValueError as error:
            raise ValueError(f"benchmark {benchmark.name!r} does not cover space "
                             f"{space.name!r}: its architecture {arch!r} is not one of the "
                             f"space's ({error})") from None
        if canonical != arch:
            raise ValueError(f"benchmark {benchmark.name!r} names architectures differently "
                             f"from space {space.name!r} ({arch!r} is {canonical!r} there)")
    return Oracle(benchmark.name, select, report, tuple(both.index),
                  float(both[report].max()), dict(both[select]), dict(both[report]))


class Queries:
    """The paid queries of one search: each distinct architecture asked about, in order."""

    def __init__(self, oracle: Oracle, budget: int):
        self.oracle, self.budget = oracle, budget
        self.archs: list[str] = []
        self.known: dict[str, float] = {}

    @property
    def left(self) -> int:
        return self.budget - len(self.archs)

    def ask(self, arch: str) -> float:
        """The accuracy of ``arch``; a new architecture costs one query of the budget."""
        if arch not in self.known:
            if self.left <= 0:
                raise RuntimeError("query budget exhausted")  # a bug in a search loop
            self.known[arch] = self.oracle.accuracy(arch)
            self.archs.append(arch)
        return self.known[arch]
