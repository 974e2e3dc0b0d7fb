"""zcjax's proxies next to NAS-Bench-Suite-Zero's own precomputed scores, on its labelled subsets.

For each space (NB101, NB301 = the DARTS space, TransNAS-Bench-101 micro) this scores a
seeded subset of the architectures of NASLib's Suite-Zero file with our proxies, into one
resumable results store per space (``bulk.score_space``; rerunning the same command only
fills in what is missing), then writes one Markdown table per space and task: the Spearman
correlation of our scores with the file's ``val_accuracy``, next to the Spearman of the
file's own score of the same proxy on the same architectures, the file's Spearman on all of
its architectures, and how well our scores and theirs agree with each other.

  python bench/compare_suite_zero.py --out runs/suite-zero --n 40 --batch-size 16 \\
      --table bench/SUITE_ZERO.md

``--proxies sota`` scores the components of two set-level rankings, which the tables add
as rows: AZ-NAS's (``az_nas``, the L-SWAG paper's figure on these spaces) and zcjax's
composition (``zcjax_composition``, frozen on NB201 and not re-tuned here):

  python bench/compare_suite_zero.py --out bench/suite_zero --n 100 --batch-size 64 \\
      --proxies sota --spaces tnb101_micro

What is scored, per space (batch: ``zcjax.data.sample_batch("cifar10", B, key(seed))``, the
bundled CIFAR-10 test images, 32x32, 10 labels):

* ``nb101``: the benchmark's network, 10 classes (Suite-Zero: CIFAR-10).
* ``darts``: NAS-Bench-301's network in the graph NASLib scored it with
  (``darts.NASLIB_ZERO_COST``: non-affine BatchNorms in the ops, a BatchNorm after each
  pool; its params equal NASLib's on all 725 archs), 10 classes.
* ``tnb101_micro``: the 64-41414 network with class_scene's 63-class head (params equal
  NASLib's class_scene params), on 32x32 CIFAR-10 images instead of 256x256 Taskonomy
  images (which are not available here). The same scores are compared with both
  classification tasks.

The subset is ``zcjax.benchmarks.sample_archs(benchmark, n, seed=sample_seed)``, the one
``zcjax score-space SPACE --archs-from FILE --n N --seed S`` scores. Not part of the test
suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from scipy import stats

import zcjax
from zcjax import benchmarks, bulk, metrics, report, store
from zcjax.spaces import darts
from sota_nb201 import HELDOUT_AGGREGATES, joined_scores, paired_difference  # bench/

PROXIES = ("snip", "synflow", "grasp", "grad_norm", "jacob_cov", "naswot", "params", "flops",
           "tcet_snip", "snip_snr")
# Our name -> the Suite-Zero (NASLib) field; None: NASLib has no such proxy.
NASLIB_NAMES = {"jacob_cov": "jacov", "naswot": "nwot", "tcet_snip": None, "snip_snr": None}
# Set-level rankings, each a row where the store holds all of its components: AZ-NAS's
# (L-SWAG's Table 1 reports it on these spaces) and zcjax's frozen composition, not re-tuned.
AGGREGATES = {name: HELDOUT_AGGREGATES[name] for name in ("az_nas", "zcjax_composition")}
# --proxies sota: every component of AGGREGATES.
SOTA_PROXIES = tuple(dict.fromkeys(c for _, parts in AGGREGATES.values() for c in parts))
DATA = "cifar10"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class Target:
    """One space: its Suite-Zero file, the tasks to correlate with, the scorer options."""

    file: tuple[str, str]  # under the data folder
    tasks: tuple[str, ...]
    options: dict


TARGETS = {
    "nb101": Target(("nb101", "naslib_zc_nasbench101_500.22280f71.json.gz"), ("cifar10",),
                    {}),
    "darts": Target(("nb301", "naslib_zc_nasbench301_725.6639fd15.json.gz"), ("cifar10",),
                    {"config": darts.NASLIB_ZERO_COST}),
    "tnb101_micro": Target(("tnb101", "naslib_zc_transbench101_micro.e5a821c2.json.gz"),
                           ("class_scene", "class_object"), {"num_classes": 63}),
}


def naslib_name(proxy: str) -> str | None:
    return NASLIB_NAMES.get(proxy, proxy)


def spearman_ci(rho: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of a Spearman rho: Fisher z with variance 1.06 / (n - 3).

    (Fieller, Hartley & Pearson, Biometrika 1957; NaN below n = 4.)
    """
    if not math.isfinite(rho) or n < 4:
        return math.nan, math.nan
    from scipy.stats import norm

    half = norm.ppf(0.5 + level / 2) * math.sqrt(1.06 / (n - 3))
    z = math.atanh(min(max(rho, -0.999999), 0.999999))
    return math.tanh(z - half), math.tanh(z + half)


def batch_id(batch_size: int, seed: int) -> str:
    """The CLI's batch id: `zcjax score-space` with the same data, size and seed resumes here."""
    return f"{DATA}-batch{batch_size}-seed{seed}"


def score(space: str, target: Target, archs, *, out: Path, proxies, batch_size: int,
          seed: int, workers: int, chunk: int) -> bulk.Summary:
    batch = zcjax.data.sample_batch(DATA, batch_size, key=jax.random.key(seed))
    options = dict(target.options)
    options.setdefault("num_classes", zcjax.data.DATASETS[DATA].num_classes)
    options.setdefault("image_size", zcjax.data.DATASETS[DATA].image_size)
    return bulk.score_space(space, proxies, batch, key=seed, out=out, dataset=DATA,
                            archs=archs, batch_id=batch_id(batch_size, seed),
                            workers=workers, chunk=chunk, **options)


def _long(values: pd.Series, proxy: str) -> pd.DataFrame:
    return pd.DataFrame({"arch": values.index, "proxy": proxy, "value": values.to_numpy()})


def compare(results: pd.DataFrame, bench, task: str, archs, proxies) -> pd.DataFrame:
    """One row per proxy: ours and Suite-Zero's Spearman with val_accuracy, and more."""
    theirs_all = bench.scores[bench.scores["dataset"] == bench.column(task)]
    rows = []
    for proxy in proxies:
        mine = results[results["proxy"] == proxy].groupby("arch")["value"].mean()
        mine = mine[mine.index.isin(archs)]
        field = naslib_name(proxy)
        if field not in set(theirs_all["proxy"]):
            field = None  # the file holds no score of this proxy (meco, swap, az_*, ...)
        row = {"proxy": proxy, "naslib": field or "-"}
        if len(mine):
            table = report.correlate(_long(mine, proxy), bench, task)
            row.update(ours=table.loc[proxy, "spearman_rho"], n=int(table.loc[proxy, "n_archs"]),
                       ours_nonfinite=int(table.loc[proxy, "n_nonfinite"]))
        theirs = theirs_all[theirs_all["proxy"] == field].set_index("arch")["value"] \
            if field else pd.Series(dtype="float64")
        if len(theirs):
            same = theirs[theirs.index.isin(mine.index if len(mine) else archs)]
            table = report.correlate(_long(same, proxy), bench, task)
            everything = report.correlate(_long(theirs, proxy), bench, task)
            row.update(theirs=table.loc[proxy, "spearman_rho"],
                       theirs_n=int(table.loc[proxy, "n_archs"]),
                       theirs_nonfinite=int(table.loc[proxy, "n_nonfinite"]),
                       theirs_all=everything.loc[proxy, "spearman_rho"],
                       theirs_all_n=int(everything.loc[proxy, "n_archs"]))
            if len(mine):
                joined = pd.concat([mine, theirs], axis=1, join="inner")
                row["agreement"] = metrics.spearman_rho(joined.iloc[:, 0],
                                                        joined.iloc[:, 1]).value
        rows.append(row)
    ours = results[results["arch"].isin(archs)]
    for name, (aggregator, parts) in AGGREGATES.items():
        if set(parts) <= set(ours["proxy"]):
            table = report.correlate(ours, bench, task, proxies=[],
                                     aggregates={name: (aggregator, parts)})
            rows.append({"proxy": name, "naslib": "-", "ours": table.loc[name, "spearman_rho"],
                         "n": int(table.loc[name, "n_archs"]),
                         "ours_nonfinite": int(table.loc[name, "n_nonfinite"])})
    return pd.DataFrame(rows)


def composition_margin(results: pd.DataFrame, bench, task: str, frame: pd.DataFrame) -> str:
    """A line under the table: zcjax_composition's Spearman minus az_nas's on the same
    archs, with its paired bootstrap SE; empty when either row is missing."""
    if not {"az_nas", "zcjax_composition"} <= set(frame["proxy"]):
        return ""
    column = bench.column(task)
    ours, theirs = (joined_scores(results, bench, column, name)
                    for name in ("zcjax_composition", "az_nas"))
    margin, se = paired_difference(ours["s"], theirs["s"], ours["a"],
                                   correlation=stats.spearmanr)
    return (f"\n\nzcjax_composition - az_nas on the same archs: Spearman {margin:+.3f} +- "
            f"{se:.3f} (paired bootstrap SE).")


def _rho(value, n) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    low, high = spearman_ci(value, n)
    return f"{value:+.3f} [{low:+.2f}, {high:+.2f}]" if math.isfinite(low) else f"{value:+.3f}"


def markdown(frame: pd.DataFrame, title: str) -> str:
    def get(row, name, default=math.nan):
        value = row.get(name, default)
        return default if value is None or (isinstance(value, float) and math.isnan(value)) \
            else value

    lines = [f"#### {title}", "",
             "| proxy (NASLib) | ours: rho [95% CI] | Suite-Zero, same archs: rho [95% CI] "
             "| Suite-Zero, all archs: rho (n) | rho(ours, Suite-Zero) | n | non-finite "
             "ours / theirs |",
             "|---|---|---|---|---|---|---|"]
    for _, row in frame.iterrows():
        n, ours_bad = int(get(row, "n", 0)), int(get(row, "ours_nonfinite", 0))
        theirs_n, theirs_bad = int(get(row, "theirs_n", 0)), int(get(row, "theirs_nonfinite", 0))
        all_rho, agreement = get(row, "theirs_all"), get(row, "agreement")
        cells = [
            f"{row['proxy']} ({row['naslib']})",
            # The intervals count the architectures each correlation used (finite pairs).
            _rho(get(row, "ours"), n - ours_bad),
            _rho(get(row, "theirs"), theirs_n - theirs_bad),
            "-" if math.isnan(all_rho) else f"{all_rho:+.3f} ({int(row['theirs_all_n'])})",
            "-" if math.isnan(agreement) else f"{agreement:+.3f}",
            str(n),
            f"{ours_bad} / {theirs_bad if theirs_n else '-'}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/suite-zero",
                        help="results stores, one folder per space (resumable)")
    parser.add_argument("--n", type=int, default=None,
                        help="architectures per space, a seeded subset (default: all)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the subset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the init and the batch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--proxies", default=",".join(PROXIES),
                        help="comma-separated; 'sota': the components of the az_nas and "
                        f"zcjax_composition rows ({','.join(SOTA_PROXIES)}); default "
                        "%(default)s")
    parser.add_argument("--spaces", default=",".join(TARGETS),
                        help=f"comma-separated, of {', '.join(TARGETS)}")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="folder holding nb101/, nb301/, tnb101/ Suite-Zero files")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=10,
                        help="architectures per part file: a killed run loses at most these")
    parser.add_argument("--score", action=argparse.BooleanOptionalAction, default=True,
                        help="score what is missing first (default); --no-score: table only")
    parser.add_argument("--table", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    proxies = (list(SOTA_PROXIES) if args.proxies == "sota" else
               [p for p in args.proxies.split(",") if p])
    spaces = [s for s in args.spaces.split(",") if s]
    unknown = sorted(set(spaces) - set(TARGETS))
    if unknown:
        parser.error(f"unknown space(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")

    sections = []
    for space in spaces:
        target = TARGETS[space]
        path = Path(args.data_dir).joinpath(*target.file)
        bench = benchmarks.load_benchmark(path, space=space)
        archs = benchmarks.sample_archs(bench, args.n, seed=args.sample_seed)
        out = Path(args.out) / space
        timing = ""
        if args.score:
            started = time.perf_counter()
            summary = score(space, target, archs, out=out, proxies=proxies,
                            batch_size=args.batch_size, seed=args.seed, workers=args.workers,
                            chunk=args.chunk)
            elapsed = time.perf_counter() - started
            print(f"{space}: {summary.rows_written} rows written ({summary.non_finite} "
                  f"non-finite), {summary.rows_skipped} already stored, {elapsed:.0f} s",
                  file=sys.stderr)
            if summary.archs_scored:
                timing = (f"This run scored {summary.archs_scored} architectures in "
                          f"{elapsed:.0f} s ({summary.compile_seconds:.0f} s of it the first "
                          "call, compilation included).")
                log = out / "timings.json"
                history = json.loads(log.read_text()) if log.exists() else []
                history.append({"archs": summary.archs_scored, "seconds": round(elapsed, 1),
                                "first_call_seconds": round(summary.compile_seconds or 0, 1),
                                "batch_size": args.batch_size, "machine": platform.node()})
                log.write_text(json.dumps(history, indent=1))
        results = store.read_results(out) if out.exists() else pd.DataFrame(
            columns=["arch", "proxy", "value", "batch_id", "seed"])
        # Only this run's rows: a store may also hold other batches or seeds.
        results = results[results["arch"].isin(archs) & (results["seed"] == args.seed)
                          & (results["batch_id"] == batch_id(args.batch_size, args.seed))]
        for task in target.tasks:
            frame = compare(results, bench, task, archs, proxies)
            title = (f"{space} vs {path.name} {task} (val_accuracy): {len(archs)} of "
                     f"{len(bench.accuracies)} archs (sample seed {args.sample_seed}), batch "
                     f"{args.batch_size} {DATA}, init seed {args.seed}")
            margin = composition_margin(results, bench, task, frame)
            sections.append(markdown(frame, title) + margin
                            + ("\n\n" + timing if timing else ""))
            timing = ""
    text = "\n\n".join(sections) + "\n"
    print(text)
    if args.table:
        Path(args.table).write_text(text)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
