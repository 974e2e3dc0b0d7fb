"""The ``zcjax`` command."""

from __future__ import annotations

import _thread
import argparse
import json
import os
import signal
import sys
import threading
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from zcjax import api, data, initialisation, proxies
from zcjax import cache as cache_lib
from zcjax.search import command as search_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zcjax",
        description="Zero-cost NAS proxies in JAX: score architectures from one minibatch.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score",
        help="score architectures with zero-cost proxies and print a table",
        description="Score NB201 architectures (arch strings, or a seeded random sample) on "
        "one minibatch of the bundled real images and print one row per architecture, "
        "ranked by the first proxy.",
    )
    score.add_argument("archs", nargs="*", metavar="ARCH",
                       help="arch strings, e.g. '|nor_conv_3x3~0|+|none~0|skip_connect~1|+"
                       "|nor_conv_1x1~0|none~1|avg_pool_3x3~2|'")
    score.add_argument("--sample", type=int, default=0, metavar="N",
                       help="also score N architectures drawn uniformly with --seed "
                       "(default: 0)")
    score.add_argument("--space", default="nb201", help="search space (default: nb201)")
    score.add_argument("--proxies", default=",".join(proxies.CLASSIC),
                       help="comma-separated proxy names (default: the eleven classic ones; "
                       f"available: {', '.join(proxies.names())})")
    score.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bar")
    score.add_argument("--data", default="cifar10", choices=sorted(data.DATASETS),
                       help="bundled real images to build the minibatch from (default: "
                       "cifar10)")
    score.add_argument("--batch-size", type=int, default=64,
                       help="images in the one minibatch (default: 64)")
    score.add_argument("--seed", type=int, default=0,
                       help="seed of the initialisation, the augmentation and the sample "
                       "(default: 0)")
    add_init_draw(score)
    add_cache_options(score)
    correlate = commands.add_parser(
        "correlate",
        help="rank correlation of scores with benchmark accuracies, table and plots",
        description="Join a results dataset (Parquet folder or file, one row per arch, proxy "
        "and seed) with benchmark accuracies on the arch string and print, per proxy, "
        "Kendall tau, Spearman rho, top-k overlaps, nDCG, the accuracy of the top-ranked "
        "architecture and the mean accuracy of the top 10, then the partial Kendall "
        "correlation of every pair of proxies given the accuracy. Seeds are averaged.",
    )
    correlate.add_argument("results", metavar="DIR",
                           help="results: a Parquet dataset folder or file")
    correlate.add_argument("--benchmark", default="nb201", metavar="FILE_OR_NAME",
                           help="accuracy table: 'nb201', 'nb201-suite-zero', "
                           "'nb101-suite-zero', 'nb301-suite-zero' or "
                           "'tnb101-micro-suite-zero' (found through $ZCJAX_NB201_CSV, "
                           "$ZCJAX_NB201_SUITE_ZERO, ... or $ZCJAX_BENCHMARK_DIR), or a "
                           ".csv[.gz] / Suite-Zero .json[.gz] path (default: nb201)")
    correlate.add_argument("--space", default=None,
                           help="search space of a Suite-Zero .json benchmark (default: from "
                           "NASLib's file name, e.g. zc_nasbench301 -> darts)")
    correlate.add_argument("--dataset", default="cifar10",
                           help="accuracy column of the benchmark (default: cifar10; "
                           "TransNAS-Bench: a task, e.g. class_scene)")
    correlate.add_argument("--results-dataset", default=None,
                           help="rows of the results' dataset column to use when it holds "
                           "several (default: the one named like --dataset)")
    correlate.add_argument("--proxies", default=None,
                           help="comma-separated proxies to report (default: all in the results)")
    correlate.add_argument("--select", action="append", default=[], metavar="FIELD=VALUE",
                           help="keep the rows of one run identity when a proxy's scores come "
                           "from several: a store column (batch_id=..., seed=0) or a setting "
                           "(activation_bn=batch, config.channels=[16,32,64]); VALUE is read "
                           "as JSON when it parses, else as text; repeatable (default: none)")
    correlate.add_argument("--plot", default=None, metavar="DIR",
                           help="write one score-rank vs accuracy PNG per proxy into DIR")
    correlate.add_argument("--top-fraction", type=float, default=0.1,
                           help="share of the best architectures for the first overlap column "
                           "(default: 0.1, the top 10%%)")
    correlate.add_argument("--top-k", type=int, default=50,
                           help="size of the best set for the second overlap column; NaN "
                           "when fewer architectures have accuracies (default: 50)")
    correlate.add_argument("--aggregate", action="append", default=[],
                           metavar="[ROW:]AGGREGATOR=PROXY,PROXY,...",
                           help="add a row that ranks the architectures having a score for "
                           "every listed proxy with a set-level aggregator (az_nas: sum of "
                           "log(rank / N); vkdnw_agg: the same with VKDNW's dense rank of "
                           "(vkdnw_dim, vkdnw) as the first term, so list vkdnw_dim,vkdnw "
                           "first; rank_average: minus the TE-NAS mean rank) and "
                           "correlates it like a proxy; the row is named ROW, else AGGREGATOR; "
                           "e.g. az_nas=az_expressivity,az_progressivity,az_trainability,flops; "
                           "repeatable (default: none)")
    correlate.add_argument("--partial", action=argparse.BooleanOptionalAction, default=True,
                           help="print the partial correlations (default: yes)")
    _add_score_space_parser(commands)
    search_command.add_parser(commands, proxies_available=", ".join(proxies.names()),
                              datasets=tuple(data.DATASETS),
                              common=(add_init_draw, add_cache_options))
    return parser


def _add_score_space_parser(commands) -> None:
    score_space = commands.add_parser(
        "score-space",
        help="score a whole search space (or a seeded sample) into a resumable Parquet store",
        description="Score every architecture of a space (or --n drawn uniformly without "
        "replacement with --seed; or those of a benchmark file, --archs-from) on one "
        "minibatch of the bundled real images with one compiled scorer, writing one Parquet "
        "part file per finished chunk to --out. "
        "Rerunning the same command resumes: rows already stored are skipped.",
    )
    score_space.add_argument("space", metavar="SPACE", help="search space, e.g. nb201")
    score_space.add_argument("--proxies", default=",".join(proxies.CLASSIC),
                             help="comma-separated proxy names (default: the classic ones; "
                             f"available: {', '.join(proxies.names())})")
    score_space.add_argument("--data", default="cifar10", choices=sorted(data.DATASETS),
                             help="bundled real images to build the minibatch from (default: "
                             "cifar10)")
    score_space.add_argument("--n", type=int, default=None, metavar="N",
                             help="score N architectures drawn uniformly without replacement "
                             "with --seed, from the space or from --archs-from (default: all "
                             "of them)")
    score_space.add_argument("--archs-from", default=None, metavar="FILE_OR_NAME",
                             help="score the architectures of this benchmark (a Suite-Zero "
                             ".json[.gz] of SPACE, e.g. NASLib's zc_nasbench101.json, the "
                             "NB201 .csv[.gz], or a benchmark name as for correlate)")
    score_space.add_argument("--num-classes", type=int, default=None,
                             help="classifier width (default: the --data dataset's, e.g. 10 "
                             "for cifar10; TransNAS-Bench's heads have 100 (class_object) "
                             "and 63 (class_scene))")
    score_space.add_argument("--image-size", type=int, default=None,
                             help="input height and width; the bundled images are resized "
                             "(bilinear) when it differs from the dataset's (default: the "
                             "dataset's, e.g. 32 for cifar10; TransNAS-Bench used 256)")
    score_space.add_argument("--seed", type=int, default=0,
                             help="seed of the initialisation, the augmentation and the sample "
                             "(default: 0)")
    score_space.add_argument("--batch-size", type=int, default=64,
                             help="images in the one minibatch (default: 64)")
    score_space.add_argument("--chunk", type=int, default=100,
                             help="architectures per part file (default: 100)")
    score_space.add_argument("--out", metavar="DIR",
                             help="results store: a directory of Parquet part files "
                             "(default: runs/SPACE-DATA)")
    score_space.add_argument("--workers", type=int, default=1,
                             help="worker processes on a CPU, e.g. one per core; with "
                             "--backend ray, Ray actors (default: 1)")
    score_space.add_argument("--backend", default="processes",
                             choices=("processes", "devices", "ray"),
                             help="where the workers run: processes of this machine; "
                             "'devices': one scorer per local accelerator (jax.devices()) "
                             "in this process; or actors of a Ray cluster, each writing its "
                             "own parts into --out, which they must all reach "
                             "(default: processes)")
    score_space.add_argument("--address", default=None, metavar="ADDR",
                             help="with --backend ray: the cluster to join, e.g. "
                             "HEAD_IP:6379 (default: $RAY_ADDRESS, else a local cluster "
                             "started for this run)")
    score_space.add_argument("--gpus-per-worker", type=float, default=0, metavar="G",
                             help="with --backend ray: GPUs each actor reserves, e.g. 1 "
                             "(default: 0; each actor reserves 1 CPU)")
    add_cache_options(score_space)
    add_init_draw(score_space)
    score_space.add_argument("--no-progress", dest="progress", action="store_false",
                             help="no progress bar")


def add_cache_options(parser) -> None:
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="persistent JAX compilation cache, shared by runs and workers "
                        "(default: $ZCJAX_CACHE_DIR, else ~/.cache/zcjax/jax)")
    parser.add_argument("--no-cache", action="store_true",
                        help="compile from scratch and keep nothing (as ZCJAX_CACHE_DIR=off)")


def cache_of(args) -> str | None:
    """The compilation cache folder the options ask for, None for none."""
    return None if args.no_cache else cache_lib.resolve_cache_dir(args.cache_dir)


def cache_note(cache_dir: str | None) -> str:
    if cache_dir is None:
        return "no compilation cache"
    return f"compilation cache {cache_dir} (--no-cache: none)"


def add_init_draw(parser) -> None:
    parser.add_argument("--init-draw", default=initialisation.DEFAULT_INIT_DRAW,
                        choices=initialisation.INIT_DRAWS,
                        help="how the PyTorch-default weights are drawn: one random call "
                        "(fast to compile) or per_array (zcjax up to 0e3c075; stores "
                        "written then resume with it) (default: one)")


def _score(args) -> int:
    space = api.get_space(args.space)
    info = data.DATASETS[args.data]
    archs = [space.decode(space.check_arch(arch)) for arch in args.archs]
    if args.sample < 0:
        raise ValueError(f"--sample must be >= 0, got {args.sample}")
    if args.sample:
        archs += space.arch_strings(space.sample(jax.random.key(args.seed), args.sample))
    if not archs:
        raise ValueError("nothing to score: give ARCH strings or --sample N")
    key = jax.random.key(args.seed)
    batch = data.sample_batch(args.data, args.batch_size, key=key)
    scorer = api.make_scorer(args.space, args.proxies, num_classes=info.num_classes,
                             image_size=info.image_size, init_draw=args.init_draw)
    cache_dir = cache_of(args)
    if cache_dir is not None:
        cache_lib.use_compilation_cache(cache_dir)
    # Said before the first call, which compiles the scorer (a minute or more on a CPU
    # unless the cache holds it).
    print(f"zcjax score: compiling the scorer of {plural(len(scorer.proxies), 'proxy')} on "
          f"{args.space} ({cache_note(cache_dir)}), then scoring "
          f"{plural(len(archs), 'architecture')}", file=sys.stderr, flush=True)
    rows, started = [], time.perf_counter()
    for arch in tqdm(archs, unit="arch", desc=f"{args.space} {args.proxies}",
                     disable=not args.progress, dynamic_ncols=True, file=sys.stderr):
        scores = scorer(space.encode(arch), batch, key)
        rows.append([float(scores[name]) for name in scorer.proxies])
    elapsed = time.perf_counter() - started
    _print_table(archs, scorer.proxies, np.asarray(rows))
    print(f"\n{plural(len(archs), 'architecture')} on {args.batch_size} {args.data} images in "
          f"{elapsed:.1f} s (compilation included)", file=sys.stderr)
    return 0


def plural(count: int, noun: str) -> str:
    """``1 architecture``, ``2 architectures``, ``3 proxies``."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def _print_table(archs, names, values) -> None:
    # Rank by the first proxy, non-finite scores last.
    first = np.where(np.isfinite(values[:, 0]), values[:, 0], -np.inf)
    order = np.argsort(-first, kind="stable")
    width = max(len(a) for a in archs)
    print(f"{'rank':>4}  {'arch':<{width}}  " + "  ".join(f"{n:>11}" for n in names))
    for rank, row in enumerate(order, start=1):
        cells = "  ".join(f"{v:>11.4g}" for v in values[row])
        print(f"{rank:>4}  {archs[row]:<{width}}  {cells}")


def _correlate(args) -> int:
    from zcjax import benchmarks, report

    bench = benchmarks.load_benchmark(args.benchmark, space=args.space)
    column = bench.column(args.dataset)
    chosen = None if args.proxies is None else [p for p in args.proxies.split(",") if p]
    options = dict(proxies=chosen, results_dataset=args.results_dataset,
                   select=_selection(args.select))
    results = report.load_results(args.results)  # read once for both tables
    table = report.correlate(results, bench, column, top_fraction=args.top_fraction,
                             top_k=args.top_k, plot_dir=args.plot,
                             aggregates=_aggregates(args.aggregate), **options)
    print(f"{bench.name} {column}: {bench.descriptions.get(column, '')}")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.partial and len(table) > 1:
        pairs = report.partial_correlations(results, bench, column, **options)
        print(f"\npartial Kendall correlation of each pair given {column} accuracy")
        print(pairs.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.plot is not None:
        print(f"\n{len(table)} plots written to {args.plot}", file=sys.stderr)
    return 0


def _aggregates(specs: list[str]) -> dict[str, tuple[str, list[str]]]:
    """``["az_nas=a,b", "mine:rank_average=a,c"]`` -> ``{"az_nas": ("az_nas", ["a", "b"]),
    "mine": ("rank_average", ["a", "c"])}``; the aggregator is checked by report.correlate."""
    aggregates = {}
    for spec in specs:
        head, separator, listed = spec.partition("=")
        row, _, aggregator = head.rpartition(":")
        components = [p for p in listed.split(",") if p]
        if not separator or not aggregator or not components:
            raise ValueError(f"--aggregate takes [ROW:]AGGREGATOR=PROXY,PROXY,..., got {spec!r}")
        row = row or aggregator
        if row in aggregates:
            raise ValueError(f"--aggregate: row {row!r} given twice; name one ROW:{aggregator}=...")
        aggregates[row] = (aggregator, components)
    return aggregates


def _selection(pairs: list[str]) -> dict[str, object]:
    """``["activation_bn=batch", "seed=0"]`` -> ``{"activation_bn": "batch", "seed": 0}``."""
    selection = {}
    for pair in pairs:
        name, separator, text = pair.partition("=")
        if not separator or not name:
            raise ValueError(f"--select takes FIELD=VALUE, got {pair!r}")
        try:
            selection[name] = json.loads(text)
        except ValueError:
            selection[name] = text
    return selection


def _archs_to_score(args, space, key):
    """None (the whole space), a seeded sample of the space, or a benchmark's archs."""
    if args.archs_from is not None:
        from zcjax import benchmarks

        bench = benchmarks.load_benchmark(args.archs_from, space=args.space)
        try:
            return benchmarks.sample_archs(bench, args.n, seed=args.seed)
        except ValueError as error:
            raise ValueError(f"--n: {error}") from None
    if args.n is None:
        return None
    total = space.num_archs
    if args.n < 1 or (total is not None and args.n > total):
        raise ValueError(f"--n must be in 1..{total or 'the space size'}, got {args.n}")
    return space.sample(key, args.n)


def _resized(batch, size: int):
    """The batch's images resized to size x size (bilinear, antialiased when shrinking)."""
    images, labels = batch
    shape = (images.shape[0], size, size, images.shape[-1])
    return jax.image.resize(images, shape, "bilinear", antialias=True), labels


def _score_space(args) -> int:
    from zcjax import bulk

    space = api.get_space(args.space)
    info = data.DATASETS[args.data]
    proxies.resolve(args.proxies)  # name errors before any work
    actor_options = _ray_actor_options(args)
    for name in ("num_classes", "image_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    num_classes = args.num_classes or info.num_classes
    image_size = args.image_size or info.image_size
    key = jax.random.key(args.seed)
    archs = _archs_to_score(args, space, key)
    batch = data.sample_batch(args.data, args.batch_size, key=key)
    batch_id = f"{args.data}-batch{args.batch_size}-seed{args.seed}"
    if image_size != info.image_size:
        batch, batch_id = _resized(batch, image_size), f"{batch_id}-resized{image_size}"
    cache_dir = cache_of(args)
    # Said before the scorer compiles, which takes minutes on a CPU with no cache.
    print(f"zcjax score-space: {args.space} with {args.proxies}; architectures not yet "
          f"stored are scored after one compilation of the scorer ({cache_note(cache_dir)})",
          file=sys.stderr, flush=True)
    summary = bulk.score_space(
        args.space, args.proxies, batch, key=args.seed,
        out=args.out or f"runs/{args.space}-{args.data}", archs=archs,
        dataset=args.data, batch_id=batch_id,
        chunk=args.chunk, workers=args.workers, backend=args.backend,
        ray_address=args.address, ray_actor_options=actor_options,
        cache_dir=cache_dir or False,
        progress=args.progress, num_classes=num_classes, image_size=image_size,
        init_draw=args.init_draw)
    print(f"{summary.out}: {plural(summary.rows_written, 'row')} written "
          f"({summary.non_finite} non-finite) for {summary.archs_scored} of "
          f"{plural(summary.archs, 'architecture')}, {summary.rows_skipped} skipped as already "
          f"stored; {plural(len(summary.parts), 'part file')}, {summary.seconds:.1f} s "
          f"({summary.compile_seconds:.1f} s first call, compilation included)")
    return 0


def _ray_actor_options(args) -> dict | None:
    if args.backend != "ray":
        if args.address is not None or args.gpus_per_worker:
            raise ValueError("--address and --gpus-per-worker need --backend ray")
        return None
    if args.gpus_per_worker < 0:
        raise ValueError(f"--gpus-per-worker must be >= 0, got {args.gpus_per_worker}")
    return {"num_cpus": 1, "num_gpus": args.gpus_per_worker}


def _search(args) -> int:
    from zcjax import bulk

    data_name = search_command.data_of(args, tuple(data.DATASETS))
    info = data.DATASETS[data_name]
    proxies.resolve(args.proxy)  # name errors before any work
    key = jax.random.key(args.score_seed)

    def make_scorer(out):
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        batch = data.sample_batch(data_name, args.batch_size, key=key)
        return bulk.StoredScorer(
            args.space, args.proxy, batch, key=args.score_seed, out=out, dataset=data_name,
            batch_id=f"{data_name}-batch{args.batch_size}-seed{args.score_seed}",
            num_classes=info.num_classes, image_size=info.image_size,
            init_draw=args.init_draw, cache_dir=cache_of(args) or False)

    return search_command.run(args, make_scorer)


class Terminated(Exception):
    """SIGTERM, raised where Python next runs, as SIGINT raises KeyboardInterrupt."""


class _StopSignals:
    """SIGINT and SIGTERM handlers that raise and remember the signal.

    Python drops an exception raised where it cannot propagate (inside a garbage
    collector callback such as JAX's ``_xla_gc_callback``) and prints it with its
    traceback ("Exception ignored in ..."), so a Ctrl-C landing there would let the
    command run to its end with exit code 0 under a traceback. The dropped stop is not
    printed; it is delivered again REDELIVER_SECONDS later, where Python can raise it, so
    the command still stops; and if the command ends first, the remembered signal ends
    it as stopped: the stop's one line says it all.
    """

    REDELIVER_SECONDS = 0.05

    def __init__(self):
        self.received: signal.Signals | None = None
        self._previous_unraisable_hook = sys.unraisablehook
        self._active = False
        self._lock = threading.Lock()

    def __call__(self, signum, frame):
        if not self._active:  # a redelivery that arrived as the command ended
            return
        self.received = signal.Signals(signum)
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    def _unraisable(self, unraisable) -> None:
        if not isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
            self._previous_unraisable_hook(unraisable)
            return
        timer = threading.Timer(self.REDELIVER_SECONDS, self._redeliver, (self.received,))
        timer.daemon = True
        timer.start()

    def _redeliver(self, signum: signal.Signals) -> None:
        with self._lock:
            if self._active:
                _thread.interrupt_main(signum)  # runs this handler in the main thread

    def install(self) -> dict:
        self._previous_unraisable_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        self._active = True
        return {signum: signal.signal(signum, self)
                for signum in (signal.SIGINT, signal.SIGTERM)}

    def uninstall(self, previous: dict) -> None:
        with self._lock:  # no redelivery from here on
            self._active = False
        for number, handler in previous.items():
            signal.signal(number, handler)
        sys.unraisablehook = self._previous_unraisable_hook


def _resume_hint(args) -> str:
    """What an interrupted command kept, and how to go on."""
    if args.command == "score-space":
        return ("every finished chunk is stored in "
                f"{args.out or f'runs/{args.space}-{args.data}'}; rerun the same command "
                "to resume")
    if args.command == "search":
        return ("the scores and the finished seeds are stored in "
                f"{args.out or 'runs/search-' + args.space + '-' + args.dataset}; rerun the "
                "same command to resume")
    return "nothing was stored"


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code: 0, 2 for bad input, 128 + signal when stopped.

    SIGINT (Ctrl-C) and SIGTERM end a command with one line saying what is stored and
    how to resume (exit code 130 / 143), no traceback.
    """
    args = _parser().parse_args(argv)
    stops = _StopSignals()
    previous = stops.install()
    try:
        commands = {"score": _score, "correlate": _correlate, "score-space": _score_space,
                    "search": _search}
        code = commands[args.command](args)
        if stops.received is None:
            return code
        signum = stops.received  # raised where Python dropped it; what ran since is kept
    except (ValueError, TypeError, KeyError, FileNotFoundError, ImportError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"zcjax {args.command}: error: {message}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as stop:
        signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
    finally:
        stops.uninstall(previous)
    print(f"\nzcjax {args.command}: stopped by {signum.name}; {_resume_hint(args)}",
          file=sys.stderr)
    return 128 + signum


def entry_point() -> None:
    """The ``zcjax`` console script.

    After a stop by signal the process ends with ``os._exit``: interpreter teardown while
    XLA's compiler threads still run can crash (SIGSEGV in libjax_common), and every stored
    part is already on disk. Ctrl-C stops the command even when it was started with SIGINT
    ignored (a shell's background job, some test runners' workers): ``main`` installs its
    own handlers.
    """
    code = main()
    if code > 128:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
