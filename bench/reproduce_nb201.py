"""Reproduce the paper's NB201 comparison (PAPER.md section 5, Table 2): Kendall tau of
each proxy against NATS-Bench test accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120.

Scores a fixed, seeded, uniform sample of NB201 architectures (default 1000) with the
paper's proxies, once per dataset with that dataset's own bundled images and class count
(CIFAR-10: 10 classes, CIFAR-100: 100, ImageNet16-120: the bundled real ImageNet images at
16x16 with a 120-class head and pseudo-labels in 0..119, see ``zcjax.data.sample_batch``),
into a resumable results store, then writes the correlation table in Markdown.

  python bench/reproduce_nb201.py --out runs/nb201-repro --n 1000 \\
      --benchmark ../shared/data/nb201/nb201_accuracies.csv.gz --table bench/REPRODUCTION.md

Already stored rows are not recomputed, so a store filled elsewhere (bench/gpu_check.py on
a GPU writes the same format and settings) is only correlated. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import jax
import pandas as pd

import zcjax
from zcjax import bulk, store
from zcjax.spaces import nb201

PROXIES = ("snip", "synflow", "naswot", "lnwot", "snip_snr", "synflow_snr", "tcet_snip",
           "tcet_synflow", "grad_norm", "grasp", "params")
DATASETS = ("cifar10", "cifar100", "imagenet16-120")
# PAPER.md section 5, Table 2: Kendall tau on all 15625 NB201 networks vs test accuracy
# (CIFAR-10, CIFAR-100, ImageNet16-120).
PUBLISHED = {
    "params": (0.58, 0.55, 0.52),
    "grad_norm": (0.46, 0.47, 0.43),
    "grasp": (0.37, 0.37, 0.40),
    "synflow": (0.54, 0.57, 0.56),
    "snip": (0.46, 0.46, 0.43),
    "naswot": (0.58, 0.62, 0.60),
    "lnwot": (0.57, 0.57, 0.56),
    "synflow_snr": (0.63, 0.60, 0.59),
    "snip_snr": (0.68, 0.65, 0.63),
    "tcet_synflow": (0.65, 0.62, 0.58),
    "tcet_snip": (0.69, 0.65, 0.62),
}
SAMPLE_SEED, BATCH_SIZE = 0, 64


def sample(n: int):
    return nb201.sample(jax.random.key(SAMPLE_SEED), n)


def score(out: Path, n: int, *, workers: int) -> None:
    genotypes = sample(n)
    for dataset in DATASETS:
        info = zcjax.data.DATASETS[dataset]
        batch = zcjax.data.sample_batch(dataset, BATCH_SIZE, key=jax.random.key(0))
        config = nb201.Config(num_classes=info.num_classes, image_size=info.image_size)
        summary = bulk.score_space("nb201", PROXIES, batch, key=0, out=out, dataset=dataset,
                                   archs=genotypes, config=config, workers=workers)
        print(f"{dataset}: {summary.rows_written} rows written, {summary.rows_skipped} "
              f"already stored, {summary.non_finite} non-finite, {summary.seconds:.0f} s",
              file=sys.stderr)


def table(out: Path, benchmark_path: str, n: int) -> str:
    results = store.read_results(out)
    archs = set(nb201.arch_strings(sample(n)))
    results = results[results["arch"].isin(archs)]
    benchmark = zcjax.benchmarks.load_benchmark(benchmark_path)
    columns = {}
    for dataset in DATASETS:
        report = zcjax.correlate(results[results["dataset"] == dataset], benchmark, dataset,
                                 proxies=PROXIES)
        columns[dataset] = report if report.index.name == "proxy" else report.set_index("proxy")
    lines = ["| proxy | " + " | ".join(f"{d} tau (paper)" for d in DATASETS)
             + " | archs | non-finite |", "|---" * (len(DATASETS) + 3) + "|"]
    for proxy in PROXIES:
        cells = []
        for position, dataset in enumerate(DATASETS):
            tau = columns[dataset].loc[proxy, "kendall_tau"]
            published = PUBLISHED.get(proxy)
            cells.append(f"{tau:.3f}" + (f" ({published[position]:.2f})" if published else ""))
        archs_used = "/".join(str(int(columns[d].loc[proxy, "n_archs"])) for d in DATASETS)
        dropped = "/".join(str(int(columns[d].loc[proxy, "n_nonfinite"])) for d in DATASETS)
        lines.append(f"| {proxy} | " + " | ".join(cells) + f" | {archs_used} | {dropped} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results store directory")
    parser.add_argument("--n", type=int, default=1000, help="sample size (default 1000)")
    parser.add_argument("--benchmark", default="nb201",
                        help="NB201 accuracy CSV path or name (zcjax.benchmarks)")
    parser.add_argument("--table", type=Path, help="also write the Markdown table here")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-score", action="store_true",
                        help="only correlate what the store holds")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not args.no_score:
        score(args.out, args.n, workers=args.workers)
    text = table(args.out, args.benchmark, args.n)
    print(text)
    if args.table:
        machine = f"{platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}"
        args.table.write_text(f"{text}\n\n{args.n} archs (seed {SAMPLE_SEED}), batch "
                              f"{BATCH_SIZE}; {machine}; {time.perf_counter() - started:.0f} s\n")
    pd.set_option("display.width", 160)
    return 0


if __name__ == "__main__":
    sys.exit(main())
