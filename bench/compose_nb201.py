"""Choose zcjax's composition of proxies on held-out information only, then freeze it.

Issue 17 item 5: a set-level ranking of zcjax's proxies that beats VKDNW_agg, chosen
WITHOUT the test accuracies it is reported on. The rule, fixed before any choice is made:

* selection data: the scores in ``bench/sota`` (``sota_nb201.py``'s store) of the seeded
  selection sample ``nb201.sample(key(0), 1000)`` (``sota_nb201.sample``) on CIFAR-10 images, against
  ``cifar10valid_valid_nb201v1`` (NB201 v1.0's validation accuracy of the network trained
  on CIFAR-10's train half), never a test accuracy;
* family: AZ-NAS's aggregation (``zcjax.aggregate.az_nas_rank``: the sum of log(rank / N))
  of a subset of ``CANDIDATES``, VKDNW's own (vkdnw_dim, vkdnw) rank counting as one;
* search: greedy forward selection, each step adding the candidate that raises Kendall tau
  most, stopping when no candidate raises it by at least ``MIN_GAIN``;
* ``--freeze`` writes the chosen components to ``bench/composition.json`` and refuses
  while the selection sample is incomplete, or when a frozen choice exists.

The frozen composition is then reported (``sota_nb201.py``) on test accuracy of all three
datasets over architectures disjoint from the selection sample, and on the other spaces
without re-tuning.

  python bench/compose_nb201.py --store bench/sota \\
      --benchmark ../shared/data/nb201/nb201_accuracies.csv.gz [--freeze]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

import zcjax
from zcjax import aggregate, store
from zcjax.spaces import nb201

from sota_nb201 import AGGREGATES, SELECTION_SIZE, sample  # bench/

TARGET = "cifar10-valid"  # zcjax.benchmarks' name of the CSV's cifar10valid_valid_nb201v1
CANDIDATES = ("tcet_snip", "snip_snr", "meco", "meco_opt", "swap", "zico", "naswot",
              "jacob_cov", "az_expressivity", "az_progressivity", "az_trainability", "flops",
              "vkdnw_pair")
MIN_GAIN = 0.005
FROZEN = Path(__file__).resolve().parent / "composition.json"


def selection_scores(store_dir, benchmark_path):
    """(scores: archs x proxies, validation accuracy) on the selection sample's scored archs."""
    results = store.read_results(store_dir)
    results = results[(results["space"] == "nb201") & (results["dataset"] == "cifar10")]
    selection = set(nb201.arch_strings(sample(SELECTION_SIZE)))
    results = results[results["arch"].isin(selection)]
    wide = results.groupby(["arch", "proxy"]).value.mean().unstack()
    accuracy = zcjax.benchmarks.load_benchmark(benchmark_path).accuracies[TARGET]
    wide = wide[wide.index.isin(accuracy.index)]
    return wide, accuracy.reindex(wide.index).to_numpy(float)


def log_ranks(wide: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each candidate's AZ-NAS term log(rank / N) (non-finite lowest)."""
    terms = {name: aggregate.az_nas_rank(wide[[name]].to_numpy(float).T)
             for name in CANDIDATES if name in wide}
    if {"vkdnw_dim", "vkdnw"} <= set(wide):
        terms["vkdnw_pair"] = aggregate.vkdnw_rank(wide[["vkdnw_dim", "vkdnw"]].to_numpy(float).T)
    return terms


def greedy(terms: dict[str, np.ndarray], accuracy: np.ndarray):
    """The forward-selection trail: [(components, tau)], the last the choice."""
    def tau(names):
        return stats.kendalltau(sum(terms[n] for n in names), accuracy).statistic

    chosen, best, trail = [], -np.inf, []
    while len(chosen) < len(terms):
        name = max((n for n in terms if n not in chosen), key=lambda n: tau(chosen + [n]))
        value = tau(chosen + [name])
        if value < best + MIN_GAIN:
            break
        chosen, best = chosen + [name], value
        trail.append((list(chosen), value))
    return trail


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("bench/sota"))
    parser.add_argument("--benchmark", default="nb201")
    parser.add_argument("--freeze", action="store_true",
                        help=f"write the choice to {FROZEN.name} (full selection sample only)")
    args = parser.parse_args(argv)
    wide, accuracy = selection_scores(args.store, args.benchmark)
    terms = log_ranks(wide)
    missing = sorted(set(CANDIDATES) - set(terms))
    print(f"selection sample: {len(wide)} of {SELECTION_SIZE} archs scored; target {TARGET}"
          + (f"; candidates without scores: {', '.join(missing)}" if missing else ""))
    vkdnw_agg = aggregate.vkdnw_rank(wide[AGGREGATES["vkdnw_agg"][1]].to_numpy(float).T)
    print(f"VKDNW_agg on the same archs: tau {stats.kendalltau(vkdnw_agg, accuracy).statistic:.3f}")
    trail = greedy(terms, accuracy)
    for components, value in trail:
        print(f"  tau {value:.3f}  {' + '.join(components)}")
    if args.freeze:
        if len(wide) < SELECTION_SIZE or missing:
            print("not frozen: the selection sample is not fully scored", file=sys.stderr)
            return 1
        if FROZEN.exists():
            print(f"not frozen: {FROZEN} exists (a choice is made once)", file=sys.stderr)
            return 1
        FROZEN.write_text(json.dumps({"components": trail[-1][0], "selection_tau": trail[-1][1],
                                      "target": TARGET, "archs": len(wide),
                                      "min_gain": MIN_GAIN}, indent=2) + "\n")
        print(f"frozen: {FROZEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
