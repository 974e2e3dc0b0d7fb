"""The strongest training-free proxies since the paper (AZ-NAS, MeCo, SWAP, VKDNW) next to
zcjax's T-CET(SNIP), SNIP-SNR, naswot and zico on NB201, against NATS-Bench test accuracy.

Scores the seeded uniform sample of ``reproduce_nb201.py`` (``nb201.sample(key(0), n)``)
at full size (C=16, N=5), once per dataset with that dataset's bundled images and class
count, into a resumable results store (one Parquet part per ``--chunk`` architectures, so
a run stopped at any point loses at most one chunk), then writes a Markdown table of
Kendall tau and Spearman rho with bootstrap standard errors, nDCG and top-10 mean
accuracy, the published numbers of ../shared/SOTA.md beside them (``--table``: into the
file's marked table section, the rest of the file kept).

  python bench/sota_nb201.py --out bench/sota --n 1000 \\
      --benchmark ../shared/data/nb201/nb201_accuracies.csv.gz --table bench/SOTA.md

``--heldout N`` scores instead the first N architectures of a second seeded permutation
of the space (``heldout``) that are not in the 1000-architecture selection sample of
``compose_nb201.py``, and reports zcjax's frozen composition
(``zcjax.aggregate.ZCJAX_COMPOSITION``) beside every proxy and AZ-NAS / VKDNW on them
(``--table``: into the file's held-out section):

  python bench/sota_nb201.py --out bench/sota --heldout 300 \\
      --benchmark ../shared/data/nb201/nb201_accuracies.csv.gz --table bench/SOTA.md

Rerunning resumes; ``--no-score`` only correlates what the store holds (datasets with no
rows yet are left out of the table). On a 2-core CPU one architecture costs ~15 s for the
whole set after a ~6 min compilation; on a GPU run it with a larger ``--chunk``.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from scipy import stats

import zcjax
from zcjax import aggregate, bulk, report, store
from zcjax.spaces import nb201

PROXIES = ("az_expressivity", "az_progressivity", "az_trainability", "flops", "meco",
           "meco_opt", "swap", "swap_reg", "vkdnw", "vkdnw_dim", "tcet_snip", "snip_snr",
           "naswot", "zico", "jacob_cov")
AGGREGATES = {"az_nas": ("az_nas", ["az_expressivity", "az_progressivity", "az_trainability",
                                    "flops"]),
              # VKDNW's single-proxy ranking: the dense rank of (vkdnw_dim, vkdnw).
              "vkdnw_single": ("vkdnw_agg", ["vkdnw_dim", "vkdnw"]),
              "vkdnw_agg": ("vkdnw_agg", ["vkdnw_dim", "vkdnw", "jacob_cov", "az_expressivity",
                                          "az_trainability", "flops"])}
REPORTED = tuple(p for p in PROXIES if p != "vkdnw_dim") + tuple(AGGREGATES)
# Held-out rows: the frozen composition first, then what it is compared with.
HELDOUT_AGGREGATES = {"zcjax_composition": ("az_nas", list(aggregate.ZCJAX_COMPOSITION)),
                      **AGGREGATES}
DATASETS = ("cifar10", "cifar100", "imagenet16-120")
# ../shared/SOTA.md: Kendall tau on all 15625 NB201 networks (CIFAR-10, CIFAR-100,
# ImageNet16-120), as each method's paper reports it.
PUBLISHED = {
    "az_nas": (0.741, 0.723, 0.710),
    "vkdnw_single": (0.618, None, None),
    "vkdnw_agg": (0.750, 0.753, 0.743),
    "tcet_snip": (0.69, 0.65, 0.62),
    "snip_snr": (0.68, 0.65, 0.63),
    "naswot": (0.58, 0.62, 0.60),
}
SAMPLE_SEED, HELDOUT_SEED, SELECTION_SIZE, BATCH_SIZE, BOOTSTRAP = 0, 1, 1000, 64, 200
# --table rewrites only what lies between a pair of these lines of the Markdown file.
TABLE_START, TABLE_END = "<!-- sota_nb201.py table -->", "<!-- end of table -->"
HELDOUT_START, HELDOUT_END = "<!-- sota_nb201.py heldout table -->", "<!-- end of heldout table -->"


def sample(n: int):
    return nb201.sample(jax.random.key(SAMPLE_SEED), n)


def heldout(n: int):
    """The first ``n`` of a seeded permutation of all NB201 genotypes that are not in the
    composition's selection sample (so growing ``n`` keeps the earlier ones)."""
    selection = set(nb201.arch_strings(sample(SELECTION_SIZE)))
    order = nb201.sample(jax.random.key(HELDOUT_SEED), nb201.NUM_ARCHS)
    keep = [i for i, arch in enumerate(nb201.arch_strings(order)) if arch not in selection]
    return order[keep[:n]]


def score(out: Path, genotypes, datasets, *, workers: int, chunk: int,
          proxies=PROXIES) -> None:
    for dataset in datasets:
        info = zcjax.data.DATASETS[dataset]
        batch = zcjax.data.sample_batch(dataset, BATCH_SIZE, key=jax.random.key(0))
        config = nb201.Config(num_classes=info.num_classes, image_size=info.image_size)
        summary = bulk.score_space("nb201", proxies, batch, key=0, out=out, dataset=dataset,
                                   archs=genotypes, config=config, workers=workers,
                                   chunk=chunk)
        print(f"{dataset}: {summary.rows_written} rows written, {summary.rows_skipped} "
              f"already stored, {summary.non_finite} non-finite, {summary.seconds:.0f} s",
              file=sys.stderr)


def bootstrap_se(scores: np.ndarray, accuracy: np.ndarray, correlation) -> float:
    """Standard error of a rank correlation over architectures resampled with replacement
    (seeded, BOOTSTRAP resamples; non-finite scores dropped as correlate drops them)."""
    keep = np.isfinite(scores) & np.isfinite(accuracy)
    result = stats.bootstrap((scores[keep], accuracy[keep]),
                             lambda s, a: correlation(s, a).statistic, paired=True,
                             vectorized=False, n_resamples=BOOTSTRAP, method="percentile",
                             random_state=np.random.default_rng(0))
    return float(result.standard_error)


def paired_difference(first: pd.Series, second: pd.Series, accuracy: pd.Series,
                      correlation=stats.kendalltau):
    """(tau(first) - tau(second), its bootstrap SE) over the archs all three share, both
    taus (or another scipy ``correlation``) on each resample of the same archs (so what
    they share cancels)."""
    joined = pd.concat([first.rename("f"), second.rename("s"), accuracy.rename("a")],
                       axis=1, join="inner").dropna(subset=["a"])
    f, s_, a = (joined[c].to_numpy(float) for c in ("f", "s", "a"))

    def difference(f, s_, a):
        return correlation(f, a).statistic - correlation(s_, a).statistic

    result = stats.bootstrap((f, s_, a), difference, paired=True, vectorized=False,
                             n_resamples=BOOTSTRAP, method="percentile",
                             random_state=np.random.default_rng(0))
    return difference(f, s_, a), float(result.standard_error)


def _aligned(results, benchmark, dataset, proxy):
    """(scores, accuracies) of the archs that have both, for the bootstrap."""
    joined = joined_scores(results, benchmark, dataset, proxy)
    return joined["s"].to_numpy(float), joined["a"].to_numpy(float)


def joined_scores(results, benchmark, dataset, proxy) -> pd.DataFrame:
    """Columns s (the proxy's or aggregate's score) and a (accuracy), indexed by arch."""
    accuracy = benchmark.accuracies[dataset]
    if proxy in HELDOUT_AGGREGATES:
        aggregator, parts = HELDOUT_AGGREGATES[proxy]
        grouped = results[results["proxy"].isin(parts)].groupby(["arch", "proxy"]).value
        # Archs with a row for every part; a NaN score is a score, as correlate keeps it.
        present = grouped.size().unstack().reindex(columns=parts).notna().all(axis=1)
        wide = grouped.mean().unstack().reindex(columns=parts)[present]
        values = pd.Series(report.AGGREGATORS[aggregator](wide.to_numpy(float).T), wide.index)
    else:
        values = results[results["proxy"] == proxy].groupby("arch").value.mean()
    return pd.concat([values.rename("s"), accuracy.rename("a")], axis=1, join="inner")


def table(out: Path, benchmark_path: str, genotypes, aggregates=AGGREGATES) -> str:
    results = store.read_results(out)
    results = results[results["arch"].isin(set(nb201.arch_strings(genotypes)))]
    benchmark = zcjax.benchmarks.load_benchmark(benchmark_path)
    datasets = [d for d in DATASETS if (results["dataset"] == d).any()]
    notes = []
    lines = ["| proxy | dataset | archs | non-finite | Kendall tau +- SE (published) "
             "| Spearman rho +- SE | nDCG | top-10 mean acc |", "|---" * 8 + "|"]
    for dataset in datasets:
        rows = results[results["dataset"] == dataset]
        # A dataset scored with fewer proxies (--proxies) reports what it has.
        present = set(rows["proxy"])
        here = {name: spec for name, spec in aggregates.items() if set(spec[1]) <= present}
        report = zcjax.correlate(rows, benchmark, dataset,
                                 proxies=[p for p in PROXIES if p != "vkdnw_dim" and p in present],
                                 aggregates=here)
        for proxy in (*(a for a in here if a not in REPORTED), *REPORTED):
            if proxy not in report.index:
                continue
            line = report.loc[proxy]
            s, a = _aligned(rows, benchmark, dataset, proxy)
            published = PUBLISHED.get(proxy, (None,) * len(DATASETS))[DATASETS.index(dataset)]
            tau = (f"{line.kendall_tau:.3f} +- {bootstrap_se(s, a, stats.kendalltau):.3f}"
                   + (f" ({published:.3f})" if published is not None else ""))
            rho = f"{line.spearman_rho:.3f} +- {bootstrap_se(s, a, stats.spearmanr):.3f}"
            lines.append(f"| {proxy} | {dataset} | {int(line.n_archs)} | "
                         f"{int(line.n_nonfinite)} | {tau} | {rho} | {line.ndcg:.3f} | "
                         f"{line.top10_mean_acc:.2f} |")
        if "zcjax_composition" in here:
            notes.append(_composition_margins(rows, benchmark, dataset, here))
    return "\n".join(lines + notes)


def _composition_margins(rows, benchmark, dataset, aggregates) -> str:
    """The composition's Kendall tau minus each published aggregate's, paired bootstrap."""
    ours = joined_scores(rows, benchmark, dataset, "zcjax_composition")
    margins = []
    for other in ("vkdnw_agg", "az_nas"):
        if other not in aggregates:
            continue
        theirs = joined_scores(rows, benchmark, dataset, other)
        value, error = paired_difference(ours["s"], theirs["s"], ours["a"])
        shared = len(ours.index.intersection(theirs.index))
        margins.append(f"{other} {value:+.3f} +- {error:.3f} ({shared} archs)")
    return (f"\n{dataset}: zcjax_composition's Kendall tau minus (paired bootstrap over "
            f"the same archs): {', '.join(margins)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results store directory")
    parser.add_argument("--n", type=int, default=SELECTION_SIZE,
                        help=f"sample size (default {SELECTION_SIZE})")
    parser.add_argument("--heldout", type=int, metavar="N",
                        help="score and report N held-out architectures instead (disjoint "
                             "from the selection sample), with the frozen composition")
    parser.add_argument("--proxies", default=",".join(PROXIES),
                        help="comma-separated proxies to score (default: all of PROXIES; "
                             "the whole set took ~53 s per arch on CIFAR-100 against ~9 s "
                             "on CIFAR-10 here: vkdnw's per-image Jacobian has a row per "
                             "class)")
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help="comma-separated datasets to score, in order (default: all three)")
    parser.add_argument("--benchmark", default="nb201",
                        help="NB201 accuracy CSV path or name (zcjax.benchmarks)")
    parser.add_argument("--table", type=Path, help="also write the Markdown table here")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=10,
                        help="architectures per part file (default 10)")
    parser.add_argument("--no-score", action="store_true",
                        help="only correlate what the store holds")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.heldout is None:
        genotypes, aggregates, markers = sample(args.n), AGGREGATES, (TABLE_START, TABLE_END)
        described = f"sample of {args.n} archs (seed {SAMPLE_SEED})"
    else:
        genotypes, aggregates = heldout(args.heldout), HELDOUT_AGGREGATES
        markers = (HELDOUT_START, HELDOUT_END)
        described = (f"{args.heldout} held-out archs (seed {HELDOUT_SEED}, none of the "
                     f"{SELECTION_SIZE} selection archs)")
    if not args.no_score:
        score(args.out, genotypes, args.datasets.split(","), workers=args.workers,
              chunk=args.chunk, proxies=tuple(args.proxies.split(",")))
    text = table(args.out, args.benchmark, genotypes, aggregates)
    print(text)
    if args.table:
        machine = f"{platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}"
        write_section(args.table, f"{text}\n\n{described}, batch {BATCH_SIZE}; {machine}; "
                                  f"{time.perf_counter() - started:.0f} s", *markers)
    return 0


def write_section(path: Path, text: str, start: str = TABLE_START,
                  end: str = TABLE_END) -> None:
    """Put ``text`` between the file's ``start`` and ``end`` markers (the prose around them
    stays); a file without them gets them appended."""
    document = path.read_text() if path.exists() else ""
    if start in document and end in document:
        head, rest = document.split(start, 1)
        tail = rest.split(end, 1)[1]
    else:
        head, tail = document + ("\n" if document else ""), "\n"
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
