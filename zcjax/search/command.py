"""``zcjax search``: seeded searches on a benchmark, a table of the best found, the curves."""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

import numpy as np

from zcjax.search import algorithms, experiment, history, oracle, plot

# Budgets the final table reports (those up to --queries), as in bench/SEARCH.md.
TABLE_BUDGETS = (10, 25, 50, 100, 300)


def add_parser(commands, *, proxies_available: str, datasets: tuple[str, ...],
               common=()) -> None:
    """The ``search`` subcommand; each of ``common`` adds options shared with the other
    commands (``common(parser)``: --init-draw, --cache-dir)."""
    search = commands.add_parser(
        "search",
        help="search a space for its best architecture, with and without accuracy queries",
        description="Run seeded searches (training-free, random, regularised evolution, "
        "with optional zero-cost warm-up and move proposal) against a benchmark table, "
        "which stands in for training and counts every accuracy query. Zero-cost scores "
        "are computed once per architecture into a results store under --out (a rerun "
        "resumes: stored scores and finished seeds are read back). Prints the best "
        "accuracy found (mean +- std over seeds) and writes the curves as a PNG.",
    )
    search.add_argument("space", metavar="SPACE", help="search space, e.g. nb201")
    search.add_argument("--algorithm", default="evolution", metavar="A[,A...]",
                        help="comma-separated, each one of "
                        f"{', '.join(algorithms.ALGORITHMS)} (default: evolution)")
    search.add_argument("--proxy", default="naswot", metavar="P[,P...]",
                        help="zero-cost proxy (several: ranked by their mean rank) for "
                        f"training-free search, --warmup and --move; available: "
                        f"{proxies_available} (default: naswot)")
    search.add_argument("--queries", type=int, default=50,
                        help="accuracy queries per search (default: 50)")
    search.add_argument("--warmup", type=int, default=0,
                        help="zero-cost warm-up pool: score this many random architectures "
                        "for free and start from the best (default: 0, none)")
    search.add_argument("--move", type=int, default=0,
                        help="zero-cost move proposal: score this many mutants per step and "
                        "query the best (evolution; default: 0, none)")
    search.add_argument("--n", type=int, default=100,
                        help="architectures a training-free search ranks (default: 100)")
    search.add_argument("--population", type=int, default=10,
                        help="evolution's population (default: 10)")
    search.add_argument("--sample-size", type=int, default=3,
                        help="evolution's tournament size (default: 3)")
    search.add_argument("--seeds", type=int, default=10,
                        help="searches per algorithm, seeds 0..S-1 (default: 10)")
    search.add_argument("--benchmark", default="nb201", metavar="FILE_OR_NAME",
                        help="accuracy table standing in for training (default: nb201, "
                        "found through $ZCJAX_NB201_CSV or $ZCJAX_BENCHMARK_DIR)")
    search.add_argument("--dataset", default="cifar10",
                        help="the benchmark's column a query reveals (default: cifar10)")
    search.add_argument("--report", default=None,
                        help="the column reported for the networks found (default: "
                        "--dataset; e.g. --dataset cifar10-valid --report "
                        "cifar10-valid-test)")
    search.add_argument("--data", default=None, choices=sorted(datasets),
                        help="bundled real images of the proxies' minibatch (default: the "
                        "one --dataset names)")
    search.add_argument("--batch-size", type=int, default=64,
                        help="minibatch size of the proxies (default: 64)")
    search.add_argument("--score-seed", type=int, default=0,
                        help="seed of the proxies' initialisation and batch (default: 0)")
    for add in common:
        add(search)
    search.add_argument("--out", default=None, metavar="DIR",
                        help="experiment folder: scores/ (results store), histories/, "
                        "curves.png (default: runs/search-SPACE-DATASET)")
    search.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars")


def data_of(args, datasets) -> str:
    """The bundled images for the proxies: --data, else the one --dataset starts with."""
    if args.data is not None:
        return args.data
    matches = sorted((name for name in datasets if args.dataset.lower().startswith(name)),
                     key=len)
    if not matches:
        raise ValueError(f"--dataset {args.dataset!r} names no bundled images; give --data "
                         f"({', '.join(sorted(datasets))})")
    return matches[-1]


def _checked(args) -> list[str]:
    names = [name.strip() for name in args.algorithm.split(",") if name.strip()]
    unknown = [name for name in names if name not in algorithms.ALGORITHMS]
    if not names or unknown:
        raise ValueError(f"unknown --algorithm {', '.join(unknown) or repr(args.algorithm)}; "
                         f"valid: {', '.join(algorithms.ALGORITHMS)}")
    for name in ("queries", "seeds", "n", "population", "sample_size", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got "
                             f"{getattr(args, name)}")
    for name in ("warmup", "move"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if "evolution" in names:
        if args.queries < args.population:
            raise ValueError(f"--queries {args.queries} cannot fill evolution's initial "
                             f"--population {args.population}")
        if 0 < args.warmup < args.population:
            raise ValueError(f"--warmup {args.warmup} is smaller than evolution's initial "
                             f"--population {args.population}: the warm-up pool must hold it")
        if args.sample_size > args.population:
            raise ValueError(f"--sample-size {args.sample_size} exceeds --population "
                             f"{args.population}")
    if args.move and "evolution" not in names:
        raise ValueError("--move applies to evolution only")
    return names


def run(args, make_scorer) -> int:
    """Run the searches; ``make_scorer(out)`` builds the score source (checked first)."""
    names = _checked(args)
    from zcjax import get_space

    space = get_space(args.space)
    if "evolution" in names:
        space.require("mutate")
    table = oracle.make_oracle(args.benchmark, space, args.dataset, report=args.report)
    out = Path(args.out or f"runs/search-{space.name}-{args.dataset}")
    uses_scores = "training_free" in names or args.warmup or args.move
    scorer = make_scorer(out / "scores") if uses_scores else None
    groups = {}
    try:
        for name in names:
            search, settings = _search(name, args, space, table, scorer)
            label = experiment.label(name, **settings)
            if name == "training_free" or args.warmup or args.move:
                # Histories of other scores (batch, seed, init_draw) are other experiments.
                label_folder = f"{label},scores={experiment.identity_tag(scorer.run.identities)}"
            else:
                label_folder = label
            folder = (out / "histories" / experiment.folder_name(
                f"{Path(str(args.benchmark)).name},{table.dataset},{table.report}")
                / experiment.folder_name(label_folder))
            groups[label] = experiment.run_seeds(search, range(args.seeds), folder=folder,
                                                 desc=label, progress=args.progress)
    finally:
        if scorer is not None:
            scorer.flush()
    _print_table(groups, table, args)
    figure = plot.plot_curves(
        groups, out / "curves.png", optimum=table.optimum,
        title=f"{space.name} {table.report}: {args.seeds} seeds",
        ylabel=f"{table.report} of the best network found")
    print(f"curves: {os.fspath(figure)}")
    return 0


def _search(name, args, space, table, scorer):
    proxy = ",".join(scorer.proxies) if scorer is not None else None
    if name == "training_free":
        return (lambda seed: algorithms.training_free(space, scorer, key=seed, n=args.n,
                                                      oracle=table),
                {"n": args.n, "proxy": proxy, "score_seed": args.score_seed})
    warm = {"warmup": args.warmup, "proxy": proxy if args.warmup else None}
    if name == "random":
        search = functools.partial(algorithms.random_search, space, table,
                                   queries=args.queries, scores=scorer, warmup=args.warmup)
        return (lambda seed: search(key=seed)), {"queries": args.queries, **warm}
    search = functools.partial(algorithms.evolution, space, table, queries=args.queries,
                               population=args.population, sample_size=args.sample_size,
                               scores=scorer, warmup=args.warmup, move=args.move)
    settings = {"queries": args.queries, "population": args.population,
                "sample_size": args.sample_size, "move": args.move, **warm}
    if args.move:
        settings["proxy"] = proxy
    return (lambda seed: search(key=seed)), settings


def _print_table(groups, table, args) -> None:
    budgets = [b for b in TABLE_BUDGETS if b < args.queries] + [args.queries]
    summary = history.summary_table(groups, budgets)
    print(f"best {table.report} found, mean +- std over {args.seeds} seeds "
          f"(optimum {table.optimum:.2f}); columns: accuracy queries")
    width = max(len("search"), *map(len, summary.index))
    header = ["search".ljust(width), "pick".rjust(14)] + [f"q={b}".rjust(14) for b in budgets]
    print(" ".join(header))
    for label, row in summary.iterrows():
        cells = [label.ljust(width), _cell(row["pick_mean"], row["pick_std"])]
        cells += [_cell(row[f"q{b}_mean"], row[f"q{b}_std"]) for b in budgets]
        print(" ".join(cells))


def _cell(mean: float, std: float) -> str:
    return ("-" if np.isnan(mean) else f"{mean:.2f} +- {std:.2f}").rjust(14)
