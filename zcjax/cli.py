"""The ``zcjax`` command."""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from zcjax import api, data, proxies


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
                       help="also score N architectures drawn uniformly with --seed")
    score.add_argument("--space", default="nb201", help="search space (default: nb201)")
    score.add_argument("--proxies", default=",".join(proxies.CLASSIC),
                       help="comma-separated proxy names (default: the eleven classic ones; "
                       f"available: {', '.join(proxies.names())})")
    score.add_argument("--data", default="cifar10", choices=sorted(data.DATASETS),
                       help="bundled real images to build the minibatch from")
    score.add_argument("--batch-size", type=int, default=64)
    score.add_argument("--seed", type=int, default=0,
                       help="seed of the initialisation, the augmentation and the sample")
    return parser


def _score(args) -> int:
    space = api.get_space(args.space)
    info = data.DATASETS[args.data]
    archs = [space.decode(space.check_arch(arch)) for arch in args.archs]
    if args.sample:
        archs += space.arch_strings(space.sample(jax.random.key(args.seed), args.sample))
    if not archs:
        raise ValueError("nothing to score: give ARCH strings or --sample N")
    key = jax.random.key(args.seed)
    batch = data.sample_batch(args.data, args.batch_size, key=key)
    scorer = api.make_scorer(args.space, args.proxies, num_classes=info.num_classes,
                             image_size=info.image_size)
    rows, started = [], time.perf_counter()
    for arch in archs:
        scores = scorer(space.encode(arch), batch, key)
        rows.append([float(scores[name]) for name in scorer.proxies])
    elapsed = time.perf_counter() - started
    _print_table(archs, scorer.proxies, np.asarray(rows))
    print(f"\n{len(archs)} architectures on {args.batch_size} {args.data} images in "
          f"{elapsed:.1f} s (compilation included)", file=sys.stderr)
    return 0


def _print_table(archs, names, values) -> None:
    # Rank by the first proxy, non-finite scores last.
    first = np.where(np.isfinite(values[:, 0]), values[:, 0], -np.inf)
    order = np.argsort(-first, kind="stable")
    width = max(len(a) for a in archs)
    print(f"{'rank':>4}  {'arch':<{width}}  " + "  ".join(f"{n:>11}" for n in names))
    for rank, row in enumerate(order, start=1):
        cells = "  ".join(f"{v:>11.4g}" for v in values[row])
        print(f"{rank:>4}  {archs[row]:<{width}}  {cells}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"score": _score}[args.command](args)
    except (ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"zcjax {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
