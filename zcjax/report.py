"""How well proxy scores rank architectures: correlation tables, partial correlations, plots.

Input is the long results format the bulk scorer writes (one row per architecture, proxy and
seed; columns at least ``arch``, ``proxy``, ``value``, and usually ``seed``, ``dataset``,
``space``, ``seconds``), as a pandas DataFrame or a path to a Parquet file or dataset folder.
Scores are joined on the arch string with a :class:`zcjax.benchmarks.Benchmark`'s accuracies
and measured with :mod:`zcjax.metrics`.

Conventions:

* Higher scores are better for every proxy (a negative correlation says the proxy ranks
  backwards; nothing is flipped silently).
* Scores are grouped by run identity (:class:`zcjax.store.RunIdentity`: space, dataset,
  batch, settings, seed). Only seeds of ONE identity are averaged: a proxy whose rows come
  from two identities that differ in anything but the seed (another batch, another option
  value, another network config) is refused with an error naming the differing fields,
  unless ``select=`` picks one. A results frame without some identity columns is taken to
  agree on them.
* Several seeds per (arch, proxy) are averaged (arithmetic mean) before correlating; a
  non-finite value on any seed makes the mean non-finite, so that architecture is dropped
  for that proxy rather than scored from its remaining seeds. ``n_seeds`` reports how many.
* Non-finite scores are dropped pairwise by the correlations and counted in ``n_nonfinite``;
  the top-k overlaps, nDCG and the top-k accuracies rank them last instead (see
  :func:`zcjax.metrics.top_k_overlap`).
  Architectures of the results with no accuracy in the benchmark are counted in
  ``n_missing``.

References:
  Exploiting Network Compressibility and Topology in Zero-Cost NAS (AutoML 2023): Kendall tau
  against test accuracy; the partial correlation of two proxies given accuracy.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from zcjax import aggregate, metrics, store
from zcjax import settings as settings_lib
from zcjax.benchmarks import Benchmark, expanded, load_benchmark

__all__ = ["AGGREGATORS", "correlate", "load_results", "partial_correlations",
           "plot_rank_scatter"]

_REQUIRED = ("arch", "proxy", "value")


def _read_part(path: Path) -> pd.DataFrame:
    """One Parquet file of results; a file that is none, or lacks a results column, is
    one error naming it (a truncated part, another program's file in the folder)."""
    try:
        frame = pd.read_parquet(path)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path} is not a readable Parquet file ({error}); move it out of "
                         "the results folder") from None
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; results need "
                         f"{', '.join(_REQUIRED)} (move other files out of the folder)")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file, or a folder's ``*.parquet`` files (a results store's finished parts;
    temporary parts and other files beside them, e.g. a run's timings, are not results)."""
    if not path.is_dir():
        return _read_part(path)
    parts = store.part_files(path)
    if not parts:
        raise ValueError(f"{path}: no *.parquet files")
    return pd.concat([_read_part(part) for part in parts], ignore_index=True)


def load_results(results: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """Validated long results: a DataFrame, or a Parquet file or folder of part files.

    Returns a copy with ``arch`` and ``proxy`` as str and ``value`` as float64 (non-finite
    values kept).

    Raises:
      FileNotFoundError: the path does not exist.
      ValueError: a required column (arch, proxy, value) is missing, or there are no rows.
    """
    if isinstance(results, pd.DataFrame):
        frame, source = results.copy(), "results"
    else:
        path = expanded(results)
        if not path.exists():
            raise FileNotFoundError(f"results not found: {path}")
        frame, source = _read_parquet(path), str(path)
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)}; results need "
                         f"{', '.join(_REQUIRED)}")
    if frame.empty:
        raise ValueError(f"{source}: no results")
    # Partitioned datasets read back as categoricals; compare plain strings.
    frame = frame.astype({"arch": str, "proxy": str, "value": "float64"})
    if "settings" in frame.columns:
        frame["settings"] = settings_lib.canonical_column(frame)
    return frame


def _identity_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in store.RUN_COLUMNS if c != "seed" and c in frame.columns]


def _matches(frame: pd.DataFrame, name: str, value: Any) -> pd.Series:
    """Rows that agree with ``select``'s ``name=value`` (rows lacking the field agree)."""
    if name in store.RUN_COLUMNS:
        if name not in frame.columns:
            raise KeyError(f"select={{{name!r}: ...}}: the results have no {name} column")
        return frame[name] == value
    if "settings" not in frame.columns:
        raise KeyError(f"select={{{name!r}: ...}}: the results have no settings column")
    cache, found = {}, set()
    for settings in frame["settings"].unique():
        flat = settings_lib.flatten(settings)
        keys = [k for k in flat if k == name or k.split(".", 1)[-1] == name]
        found.update(repr(flat[k]) for k in keys)
        cache[settings] = all(flat[k] == value for k in keys)
    if not found:
        raise KeyError(f"select={{{name!r}: ...}}: no result's settings hold {name!r}")
    if repr(value) not in found:
        raise ValueError(f"no results match select={{{name!r}: {value!r}}}; the results "
                         f"hold {name} = {', '.join(sorted(found))}")
    return frame["settings"].map(cache).astype(bool)


def _select(frame: pd.DataFrame, select: Mapping[str, Any] | None) -> pd.DataFrame:
    if not select:
        return frame
    for name, value in select.items():
        frame = frame[_matches(frame, name, value)]
    if frame.empty:
        raise ValueError(f"no results match select={dict(select)!r}")
    return frame


def _describe(values: Iterable[Any]) -> str:
    return ", ".join(sorted(repr(v) for v in values))


def _check_one_identity(frame: pd.DataFrame) -> None:
    """Refuse a proxy whose rows come from several run identities (seeds aside)."""
    columns = _identity_columns(frame)
    if not columns:
        return
    for proxy, rows in frame.groupby("proxy", sort=False):
        distinct = rows[columns].drop_duplicates()
        if len(distinct) < 2:
            continue
        differing = {}
        for column in columns:
            if column == "settings":
                flat = [settings_lib.flatten(s) for s in distinct["settings"]]
                for key in sorted(set().union(*flat)):
                    values = {repr(f.get(key)) for f in flat}
                    if len(values) > 1:
                        differing[key] = values
            elif distinct[column].nunique() > 1:
                differing[column] = set(map(repr, distinct[column]))
        fields = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in differing.items())
        name = next(iter(differing)).split(".", 1)[-1]
        raise ValueError(
            f"proxy {proxy!r} has scores of {len(distinct)} run identities that differ in "
            f"more than the seed ({fields}); averaging them would mix experiments. Pick one "
            f"with select={{{name!r}: ...}} (CLI: --select {name}=VALUE), or correlate each "
            "separately")


def _select_dataset(frame: pd.DataFrame, dataset: str, results_dataset: str | None):
    if "dataset" not in frame.columns:
        if results_dataset is not None:
            raise ValueError(f"results_dataset={results_dataset!r} given but the results "
                             "have no dataset column")
        return frame
    present = list(pd.unique(frame["dataset"].astype(str)))
    wanted = results_dataset
    if wanted is None:
        if len(present) == 1:
            return frame
        # Scores computed on several datasets' batches: use those of the benchmark dataset.
        wanted = dataset
    matching = [d for d in present if d.lower() == wanted.lower()]
    if not matching:
        raise ValueError(
            f"the results hold scores on {', '.join(present)}, none on {wanted!r}; choose "
            "one with results_dataset="
        )
    return frame[frame["dataset"].astype(str) == matching[0]]


def _prepare(results, benchmark, dataset, proxies, results_dataset, select, components=()):
    """Mean score per (proxy, arch), seeds per proxy, and the accuracies.

    ``components`` (proxies an aggregate needs) are kept beside ``proxies``; one the results
    lack is a ValueError naming it."""
    if not isinstance(benchmark, Benchmark):
        benchmark = load_benchmark(benchmark)
    accuracy = benchmark.accuracy(dataset)
    frame = _select_dataset(load_results(results), dataset, results_dataset)
    frame = _select(frame, select)
    available = list(pd.unique(frame["proxy"]))
    absent = [p for p in dict.fromkeys(components) if p not in available]
    if absent:
        raise ValueError(f"an aggregate needs proxy {', '.join(map(repr, absent))}, which the "
                         f"results do not hold; they hold: {', '.join(available)}")
    if proxies is None:
        proxies = available
    else:
        proxies = [proxies] if isinstance(proxies, str) else list(proxies)
        unknown = [p for p in proxies if p not in available]
        if unknown:
            raise KeyError(f"no results for proxy {', '.join(map(repr, unknown))}; the results "
                           f"hold: {', '.join(available)}")
        proxies = list(dict.fromkeys([*proxies, *components]))
        frame = frame[frame["proxy"].isin(proxies)]
    _check_one_identity(frame)
    # groupby's mean skips NaN; a NaN seed must make the mean NaN (see module docstring).
    frame = frame.assign(_nan=frame["value"].isna())
    grouped = frame.groupby(["proxy", "arch"], sort=False)
    means = grouped["value"].mean().where(~grouped["_nan"].any())
    seeds = (frame.groupby("proxy")["seed"].nunique() if "seed" in frame.columns
             else pd.Series(1, index=proxies))
    # Selected per proxy by value, not MultiIndex.xs (which cannot find an empty level value).
    table = means.rename("value").reset_index()
    scores = {proxy: table.loc[table["proxy"] == proxy].set_index("arch")["value"]
              for proxy in proxies}
    return scores, seeds, accuracy, benchmark


def _joined(score: pd.Series, accuracy: pd.Series):
    known = score.index.isin(accuracy.index)
    score = score[known]
    return score.to_numpy(), accuracy.reindex(score.index).to_numpy(), int((~known).sum())


def _overlap_columns(top_fraction: float, top_k: int) -> tuple[str, str]:
    return f"top{100 * top_fraction:g}pct", f"top{top_k}"


def _negated_rank_average(score_matrix) -> np.ndarray:
    # TE-NAS's mean rank is lower-is-better; negated, it follows the higher-is-better
    # convention every row of the table is read with.
    return -aggregate.rank_average(score_matrix)


AGGREGATORS = {"az_nas": aggregate.az_nas_rank, "vkdnw_agg": aggregate.vkdnw_rank,
               "rank_average": _negated_rank_average}
"""Set-level rankings :func:`correlate` can add as rows, by name: ``az_nas``
(:func:`zcjax.aggregate.az_nas_rank`, sum of log(rank / N)), ``vkdnw_agg``
(:func:`zcjax.aggregate.vkdnw_rank`: components ``vkdnw_dim``, ``vkdnw`` first, then e.g.
``jacob_cov``, ``az_expressivity``, ``az_trainability``, ``flops``; with ``vkdnw_dim`` and
``vkdnw`` alone it is VKDNW's single-proxy ranking) and ``rank_average``
(minus the TE-NAS mean rank, :func:`zcjax.aggregate.rank_average`, so that higher is better)."""


def _check_aggregates(aggregates, proxy_names) -> dict[str, tuple[str, list[str]]]:
    """``{row: (aggregator, components)}`` validated, one ValueError naming the culprit."""
    checked = {}
    for row, spec in (aggregates or {}).items():
        try:
            aggregator, components = spec
        except (TypeError, ValueError):
            raise ValueError(f"aggregate {row!r}: give (aggregator, [proxy, ...]), got "
                             f"{spec!r}") from None
        if aggregator not in AGGREGATORS:
            raise ValueError(f"aggregate {row!r}: unknown aggregator {aggregator!r}; known: "
                             f"{', '.join(AGGREGATORS)}")
        if isinstance(components, str) or not list(components):
            raise ValueError(f"aggregate {row!r}: components must be a non-empty list of "
                             f"proxy names, got {components!r}")
        if row in proxy_names:
            raise ValueError(f"aggregate {row!r} has the name of a proxy of the table; "
                             "name it otherwise")
        checked[row] = (aggregator, [str(c) for c in components])
    return checked


def _aggregate_score(aggregator: str, components: Sequence[str],
                     scores: Mapping[str, pd.Series]) -> pd.Series:
    """The aggregate over the architectures that have a (mean) score for every component;
    a non-finite score is a score, ranked as the aggregator ranks it."""
    joined = pd.concat([scores[c].rename(c) for c in components], axis=1, join="inner")
    values = AGGREGATORS[aggregator](joined.to_numpy(np.float64).T)
    return pd.Series(values, index=joined.index, name="value")


def correlate(
    results: pd.DataFrame | str | os.PathLike,
    benchmark: Benchmark | str | os.PathLike,
    dataset: str,
    *,
    proxies: Sequence[str] | None = None,
    top_fraction: float = 0.1,
    top_k: int = 50,
    plot_dir: str | os.PathLike | None = None,
    results_dataset: str | None = None,
    select: Mapping[str, Any] | None = None,
    aggregates: Mapping[str, tuple[str, Sequence[str]]] | None = None,
) -> pd.DataFrame:
    """Rank agreement of every proxy's scores with the benchmark's accuracies on ``dataset``.

    Args:
      results: long results (DataFrame, or path to a Parquet file or folder of part files).
      benchmark: a :class:`~zcjax.benchmarks.Benchmark`, or a name or path for
        :func:`~zcjax.benchmarks.load_benchmark`.
      dataset: accuracy column of the benchmark (e.g. ``"cifar10"``).
      proxies: proxies to report, in this order; default every proxy in the results, in order
        of first appearance.
      top_fraction: share of architectures for the first overlap column (0.1: top 10%).
      top_k: size of the top set for the second overlap column (NaN when fewer architectures
        have an accuracy).
      plot_dir: if given, one scatter plot per proxy (score rank vs accuracy) is written there
        as ``{proxy}_{dataset}.png``.
      results_dataset: which rows of the results' ``dataset`` column to use when it holds
        several; default the one named like ``dataset``.
      select: keep only the rows of one run identity: ``{field: value}`` with a field of
        :data:`zcjax.store.RUN_COLUMNS` (``batch_id``, ``seed``, ...) or a name inside the
        settings (``"activation_bn"``, ``"options.activation_bn"``, ``"config.channels"``;
        rows whose settings lack it, e.g. another proxy's, are kept).
      aggregates: set-level rankings to add as rows after the proxies, ``{row name:
        (aggregator, [component proxy, ...])}`` with an aggregator of :data:`AGGREGATORS`,
        e.g. ``{"az_nas": ("az_nas", ["az_expressivity", "az_progressivity",
        "az_trainability", "flops"])}``. Each is computed from the components' seed-averaged
        scores over the architectures that have a score for every component (a non-finite
        score counts, ranked as the aggregator ranks it), then correlated like a proxy. The
        components need not be among ``proxies``; they are held to the same run-identity
        rule and ``select``.

    Returns:
      One row per proxy (index ``proxy``), then one per aggregate, with ``kendall_tau``
      (tau-b), ``spearman_rho``, ``top10pct`` and ``top50`` (names follow ``top_fraction`` and
      ``top_k``), ``ndcg`` (VKDNW's nDCG over all the architectures,
      :func:`zcjax.metrics.ndcg`; NaN when an accuracy is negative), ``top1_acc`` (accuracy
      of the architecture ranked first, :func:`zcjax.metrics.top1_accuracy`),
      ``top10_mean_acc`` (mean accuracy of the top 10, :func:`zcjax.metrics.topk_mean_accuracy`;
      NaN when fewer than 10 architectures have an accuracy), ``n_archs`` (architectures with
      both a score and an accuracy), ``n_nonfinite`` (of those, dropped by the correlations
      for a non-finite score or accuracy), ``n_missing`` (architectures of the results without
      an accuracy), ``n_seeds`` (seeds averaged; for an aggregate, the fewest of its
      components').

    Raises:
      FileNotFoundError: results or benchmark file missing.
      KeyError: unknown dataset (the message lists the valid ones) or proxy, or a
        ``select`` field the results do not have.
      ValueError: malformed results; a proxy with scores of several run identities (the
        message names the differing fields); nothing matches ``select``; top_fraction
        outside (0, 1], or top_k < 1; an aggregate that is malformed, names an unknown
        aggregator, shares a proxy's name, or needs a proxy the results do not hold.
    """
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if isinstance(proxies, str):
        proxies = [proxies]
    combined = _check_aggregates(aggregates, proxies or ())
    components = [c for _, parts in combined.values() for c in parts]
    scores, seeds, accuracy, benchmark = _prepare(results, benchmark, dataset, proxies,
                                                  results_dataset, select, components)
    reported = {p: scores[p] for p in (scores if proxies is None else proxies)}
    for row, (aggregator, parts) in _check_aggregates(aggregates, reported).items():
        reported[row] = _aggregate_score(aggregator, parts, scores)
    fraction_column, k_column = _overlap_columns(top_fraction, top_k)
    rows = []
    for proxy, score in reported.items():
        s, a, missing = _joined(score, accuracy)
        finite = np.isfinite(a)
        kendall = metrics.kendall_tau(s, a)
        rows.append({
            "proxy": proxy,
            "kendall_tau": kendall.value,
            "spearman_rho": metrics.spearman_rho(s, a).value,
            fraction_column: (metrics.top_k_overlap(s, a, fraction=top_fraction).value
                              if len(a) else math.nan),
            k_column: metrics.top_k_overlap(s, a, k=top_k).value if len(a) >= top_k else math.nan,
            # nDCG's gains are the accuracies: a negative task metric (a loss) has none.
            "ndcg": metrics.ndcg(s, a).value if not np.any(a[finite] < 0) else math.nan,
            "top1_acc": metrics.top1_accuracy(s, a).value,
            "top10_mean_acc": (metrics.topk_mean_accuracy(s, a, k=10).value
                               if finite.sum() >= 10 else math.nan),
            "n_archs": len(s),
            "n_nonfinite": kendall.dropped,
            "n_missing": missing,
            "n_seeds": (int(seeds.get(proxy, 1)) if proxy not in combined else
                        min(int(seeds.get(c, 1)) for c in combined[proxy][1])),
        })
        if plot_dir is not None:
            plot_rank_scatter(
                s, a, Path(plot_dir) / f"{_file_name(proxy)}_{_file_name(accuracy.name)}.png",
                title=f"{proxy} on {benchmark.name} {accuracy.name}: Kendall tau "
                f"{kendall.value:.3f} ({kendall.n} archs)",
                ylabel=f"{accuracy.name} accuracy",
            )
    return pd.DataFrame(rows).set_index("proxy")


def partial_correlations(
    results: pd.DataFrame | str | os.PathLike,
    benchmark: Benchmark | str | os.PathLike,
    dataset: str,
    *,
    proxies: Sequence[str] | None = None,
    results_dataset: str | None = None,
    select: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The paper's partial Kendall correlation of every pair of proxies given the accuracy.

    rho_XY.Z = (tau_XY - tau_XZ tau_YZ) / sqrt((1 - tau_XZ^2)(1 - tau_YZ^2)) with Z the
    accuracy (:func:`zcjax.metrics.partial_correlation`), on the architectures that have both
    scores and an accuracy, all three finite. A low value marks an "orthogonal" pair, which
    composes well (the paper: Synflow-SNR vs Lnwot 0.38). Arguments as for :func:`correlate`.

    Returns:
      One row per unordered pair, in proxy order: ``proxy_x``, ``proxy_y``, ``partial_tau``,
      ``n_archs`` (architectures with both scores and an accuracy), ``n_nonfinite`` (of those,
      dropped for a non-finite value). ``pivot(index="proxy_x", columns="proxy_y",
      values="partial_tau")`` gives the matrix.

    Raises:
      As :func:`correlate`.
    """
    scores, _, accuracy, _ = _prepare(results, benchmark, dataset, proxies, results_dataset,
                                      select)
    rows = []
    for x, y in itertools.combinations(scores, 2):
        joined = pd.concat([scores[x], scores[y], accuracy], axis=1, join="inner")
        result = metrics.partial_correlation(*(joined.iloc[:, i].to_numpy() for i in range(3)))
        rows.append({"proxy_x": x, "proxy_y": y, "partial_tau": result.value,
                     "n_archs": len(joined), "n_nonfinite": result.dropped})
    return pd.DataFrame(rows, columns=["proxy_x", "proxy_y", "partial_tau", "n_archs",
                                       "n_nonfinite"])


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))


def plot_rank_scatter(
    scores: Iterable[float],
    accuracies: Iterable[float],
    path: str | os.PathLike,
    *,
    title: str = "",
    ylabel: str = "accuracy",
) -> Path:
    """Scatter of score rank (1 = highest score) against accuracy, saved as a PNG.

    Non-finite scores are ranked last (:func:`zcjax.metrics.rank`) and drawn as red crosses,
    so a proxy that overflows on many architectures shows it.

    Args:
      scores: shape ``[n]``.
      accuracies: shape ``[n]``, aligned with ``scores``.
      path: the PNG to write; its folder is created.
      title: plot title.
      ylabel: y-axis label.

    Returns:
      The path written.
    """
    # The object-oriented API draws without pyplot: no backend switch, no global state.
    from matplotlib.figure import Figure

    s = np.asarray(scores, np.float64)
    a = np.asarray(accuracies, np.float64)
    ranks = metrics.rank(s)
    finite = np.isfinite(s)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(6, 4.5), dpi=100)
    axes = figure.subplots()
    # Markers shrink as points crowd: ~36 pt^2 for a sample of 50, 4 for the whole space.
    size = float(np.clip(2000.0 / max(len(s), 1), 4.0, 36.0))
    axes.scatter(ranks[finite], a[finite], s=size, alpha=0.6, linewidths=0, rasterized=True)
    if not finite.all():
        axes.scatter(ranks[~finite], a[~finite], s=max(size, 12.0), marker="x", color="tab:red",
                     label=f"non-finite score ({int((~finite).sum())})")
        axes.legend(loc="lower left")
    axes.set_xlabel("score rank (1 = highest score)")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path
