"""The search curves: best accuracy found against paid queries, mean and std over seeds."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from zcjax.search.history import History, curve


def plot_curves(groups: Mapping[str, Sequence[History]], path: str | os.PathLike, *,
                optimum: float | None = None, title: str = "",
                ylabel: str = "test accuracy of the best network found (%)",
                first_query: int = 5) -> Path:
    """One line per search (shaded: +-1 std over seeds) from ``first_query`` queries on (the
    first few are random draws whose spread would flatten the rest); training-free picks
    as dotted horizontal lines (they pay no query); ``optimum`` as a dashed line. The
    legend sits below the axes. Writes a PNG."""
    # The object-oriented API draws without pyplot: no backend switch, no global state.
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5 + 0.22 * len(groups)))
    axes = figure.add_subplot()
    colours = rcParams["axes.prop_cycle"].by_key()["color"]
    shown = [] if optimum is None else [optimum]
    for index, (label, histories) in enumerate(groups.items()):
        colour = colours[index % len(colours)]
        budget = max(h.queries for h in histories)
        picks = np.asarray([h.pick_reported for h in histories], np.float64)
        if budget == 0:
            axes.axhline(picks.mean(), color=colour, linestyle=":", linewidth=1.8,
                         label=f"{label} (no queries): {picks.mean():.2f} +- {picks.std():.2f}")
            shown.append(picks.mean())
            continue
        mean, std = curve(histories, budget)
        start = min(first_query, budget) - 1
        queries = np.arange(1, budget + 1)[start:]
        mean, std = mean[start:], std[start:]
        axes.plot(queries, mean, color=colour, linewidth=1.8, marker="o", markersize=3,
                  markevery=max(1, len(queries) // 12),
                  label=f"{label}: {mean[-1]:.2f} +- {std[-1]:.2f} at {budget}")
        axes.fill_between(queries, mean - std, mean + std, color=colour, alpha=0.12)
        shown += [float(np.min(mean - std)), float(np.max(mean))]
    if optimum is not None:
        axes.axhline(optimum, color="black", linestyle="--", linewidth=1,
                     label=f"optimum {optimum:.2f}")
    low, high = min(shown), max(shown)
    margin = 0.05 * (high - low) or 0.5
    axes.set_ylim(low - margin, high + margin)
    axes.set_xscale("log")
    axes.set_xlabel("accuracy queries (trained networks)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1,
                frameon=False)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path
