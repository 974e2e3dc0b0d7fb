"""Every proxy's score on a fixed set of architectures per space, for before/after checks.

A refactor that must not change numbers is checked by running this script on the code
before and after it and comparing the two files bit for bit::

    python bench/snapshot_scores.py --out before.json          # on the old commit
    python bench/snapshot_scores.py --out after.json           # on the new one
    python bench/snapshot_scores.py --compare before.json after.json

Every space runs at a small configuration (NB201: channels 4/8/16, two cells per stage, so
stacked cells are exercised), batch 16: scoring every proxy at the benchmark's size takes
hours on a 2-core CPU. Proxies are compiled in three groups (the classic ones, the
paper's SSNR/T-CET family, the rest), the same on both sides. Only the public API is used
(``zcjax.get_space``, ``zcjax.make_scorer``, ``zcjax.proxies.names``), so the script runs
unchanged on both sides of a refactor.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import jax
import numpy as np

import zcjax

NUM_ARCHS = 20


def _configs():
    """(space, config overrides, batch size, image size) per space."""
    return {
        "nb201": (dict(channels=(4, 8, 16), cells_per_stage=2), 16, 32),
        "tnb101_micro": (dict(base_channels=8, macro="41", cells_per_layer=1,
                              num_classes=10, image_size=32), 16, 32),
        "darts": (dict(channels=8, layers=3, num_classes=10, image_size=32), 16, 32),
        "nb101": (dict(stem_channels=16, stacks=2, cells_per_stack=1, num_classes=10,
                       image_size=32), 16, 32),
    }


def _groups() -> list[list[str]]:
    names = zcjax.proxies.names()
    classic = [n for n in names if n in zcjax.proxies.CLASSIC]
    paper = [n for n in names if "_snr" in n or n.startswith("tcet_")]
    return [classic, paper, [n for n in names if n not in classic + paper]]


def _bits(value: float) -> str:
    """The float64 bit pattern, so NaN payloads and -0.0 compare exactly too."""
    return np.float64(value).tobytes().hex()


def _score(space, proxies, config, genotypes, batch) -> dict:
    started = time.perf_counter()
    scorer = zcjax.make_scorer(space, proxies, config=config)
    rows = [scorer(g, batch, jax.random.key(7)) for g in genotypes]
    print(f"{space} {len(proxies)} proxies: {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    return {proxy: {"values": [float(r[proxy]) for r in rows],
                    "bits": [_bits(float(r[proxy])) for r in rows]} for proxy in proxies}


def snapshot(spaces, num_archs: int, out: str) -> dict:
    """Score every space, rewriting ``out`` after each (a long run keeps what it finished)."""
    results = {}
    for name in spaces:
        overrides, batch_size, _ = _configs()[name]
        space = zcjax.get_space(name)
        config = space.Config(**overrides)
        batch = zcjax.data.sample_batch("cifar10", batch_size)
        genotypes = space.sample(jax.random.key(123), num_archs)
        per_space = {}
        for group in _groups():
            # One scorer per group (one compilation); a proxy the space cannot score is
            # then retried alone, so its error is recorded and the others still run.
            try:
                per_space.update(_score(name, group, config, genotypes, batch))
            except Exception:
                for proxy in group:
                    try:
                        per_space.update(_score(name, [proxy], config, genotypes, batch))
                    except Exception as error:
                        per_space[proxy] = {"error": f"{type(error).__name__}: {error}"}
        results[name] = {"archs": space.arch_strings(genotypes), "proxies": per_space}
        with open(out, "w") as file:
            json.dump(results, file, indent=1)
    return results


def compare(before_path: str, after_path: str) -> int:
    with open(before_path) as file:
        before = json.load(file)
    with open(after_path) as file:
        after = json.load(file)
    differing = 0
    for space, old in before.items():
        new = after.get(space)
        if new is None:
            print(f"{space}: missing after")
            differing += 1
            continue
        if old["archs"] != new["archs"]:
            print(f"{space}: different architectures")
            differing += 1
            continue
        same = 0
        for proxy, entry in old["proxies"].items():
            other = new["proxies"].get(proxy)
            if other is None:
                print(f"{space} {proxy}: missing after")
                differing += 1
            elif entry.get("bits") != other.get("bits"):
                worst = max((abs(a - b) / max(abs(a), 1e-300)
                             for a, b in zip(entry.get("values", []), other.get("values", []))
                             if math.isfinite(a) and math.isfinite(b)), default=math.nan)
                print(f"{space} {proxy}: differs (max relative {worst:.3g}; "
                      f"before {entry.get('error', '')} after {other.get('error', '')})")
                differing += 1
            else:
                same += 1
        print(f"{space}: {same} of {len(old['proxies'])} proxies bit-identical on "
              f"{len(old['archs'])} architectures")
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the snapshot here (JSON)")
    parser.add_argument("--spaces", default=",".join(_configs()),
                        help="comma-separated spaces (default: all four)")
    parser.add_argument("--archs", type=int, default=NUM_ARCHS,
                        help=f"architectures per space (default: {NUM_ARCHS})")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="compare two snapshots bit for bit instead")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if not args.out:
        parser.error("give --out or --compare")
    snapshot(args.spaces.split(","), args.archs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
