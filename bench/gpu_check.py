"""One-shot GPU check: compile and per-architecture cost of every scoring strategy, then
the paper's reproduction set and as much of the full NB201 space as the time allows.

Made for a device lent for minutes (nothing is installed: JAX with CUDA, flax, optax,
chex, pandas and pyarrow are expected to be there). Everything is deadline-driven and
every phase writes its results as soon as it ends, so a run cut short still reports.

  python bench/gpu_check.py --out $OUT --budget 520          # on the GPU machine
  python bench/gpu_check.py --out /tmp/gpu --budget 120 --smoke   # CPU smoke test

Writes ``timings.json`` (strategies: compile seconds, seconds per architecture, vmap
widths), and Parquet parts in zcjax's results-store format (``zcjax correlate`` reads them):
``repro-<dataset>.parquet`` (a seeded sample of 1000 archs per dataset, the dataset's own
images and class count) and ``full-cifar10.parquet`` (the rest of the space on CIFAR-10).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:  # installed
    import zcjax.spaces  # noqa: F401
except ImportError:  # a bare checkout (the device machine): spaces/ is zcjax.spaces
    sys.path.insert(0, str(REPO))
    import spaces

    sys.modules["zcjax.spaces"] = spaces

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import zcjax  # noqa: E402
from zcjax import bulk, store  # noqa: E402
from zcjax.api import in_x64  # noqa: E402
from zcjax.proxies import CLASSIC  # noqa: E402
from zcjax.spaces import nb201  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategies import per_architecture_scorer  # noqa: E402

PROXY_SETS = {
    "tcet_snip": ("tcet_snip",),
    "synflow": ("synflow",),
    "jacob_cov": ("jacob_cov",),
    "naswot": ("naswot",),
    "classic": CLASSIC,
}
REPRODUCTION = ("snip", "synflow", "naswot", "lnwot", "snip_snr", "synflow_snr", "tcet_snip",
                "tcet_synflow", "grad_norm", "grasp", "params")
DATASETS = ("cifar10", "cifar100", "imagenet16-120")
SAMPLE_SEED, SAMPLE_SIZE, BATCH_SIZE = 0, 1000, 64
LOG = []


def log(message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    LOG.append(line)
    print(line, flush=True)


def ready(outputs):
    return jax.block_until_ready(outputs)


@in_x64
def time_sequential(scorer, genotypes, batch, key, *, deadline):
    """Compile (first call), then seconds per architecture with asynchronous dispatch."""
    images, labels = batch
    started = time.perf_counter()
    ready(scorer.compiled(jnp.asarray(genotypes[0]), images, labels, key))
    compile_s = time.perf_counter() - started
    started, done = time.perf_counter(), 0
    outputs = []
    for genotype in genotypes[1:]:
        outputs.append(scorer.compiled(jnp.asarray(genotype), images, labels, key))
        done += 1
        if time.time() > deadline:
            break
    ready(outputs)
    return compile_s, (time.perf_counter() - started) / max(done, 1), done


@functools.lru_cache(maxsize=None)
def vmapped(scorer):
    """``scorer.compiled`` vmapped over genotypes: one jitted function per scorer, so
    repeated calls reuse its compilations."""
    return jax.jit(jax.vmap(scorer.compiled, in_axes=(0, None, None, None)))


@in_x64
def time_vmap(scorer, genotypes, batch, key, width, *, deadline):
    images, labels = batch
    batched = vmapped(scorer)
    chunks = [genotypes[i:i + width] for i in range(0, len(genotypes) - width + 1, width)]
    started = time.perf_counter()
    ready(batched(jnp.asarray(chunks[0]), images, labels, key))
    compile_s = time.perf_counter() - started
    started, done = time.perf_counter(), 0
    for chunk in chunks[1:3]:
        ready(batched(jnp.asarray(chunk), images, labels, key))
        done += len(chunk)
        if time.time() > deadline:
            break
    return compile_s, (time.perf_counter() - started) / max(done, 1), done


@in_x64
def time_per_architecture_jit(proxies, genotypes, batch, key, *, config, count):
    """One compilation per architecture (the reference path): compile + run each."""
    images, labels = batch
    costs = []
    for genotype in genotypes[:count]:
        scorer = per_architecture_scorer(proxies, config=config)
        started = time.perf_counter()
        ready(scorer(tuple(int(op) for op in genotype), images, labels, key))
        costs.append(time.perf_counter() - started)
    return float(np.median(costs)), len(costs)


def _measure_sequential(name, scorer, genotypes, batch, key, deadline):
    try:
        compile_s, per_arch, n = time_sequential(scorer, genotypes[:48], batch, key,
                                                 deadline=deadline)
        log(f"{name}: compiled once: compile {compile_s:.1f} s, {per_arch * 1e3:.2f} ms/arch")
        return {"compiled_once": {"compile_s": compile_s, "per_arch_s": per_arch, "archs": n}}
    except Exception as error:  # noqa: BLE001 - report and go on
        log(f"{name}: compiled once failed: {error!r}"[:300])
        return {"compiled_once": {"error": repr(error)[:500]}}


def measure(name, proxies, config, batch, key, *, deadline, widths, jit_archs=0,
            sequential=True):
    """Every strategy for one proxy set: compiled once (``sequential``), vmap at each
    width, and (``jit_archs`` > 0) one jit per architecture. Failures are recorded."""
    entry = {}
    genotypes = nb201.sample(jax.random.key(1), max(64, 3 * max(widths, default=1)))
    scorer = zcjax.make_scorer("nb201", proxies, config=config)
    if sequential:
        entry.update(_measure_sequential(name, scorer, genotypes, batch, key, deadline))
    for width in widths:
        if time.time() > deadline:
            break
        try:
            compile_s, per_arch, n = time_vmap(scorer, genotypes, batch, key, width,
                                               deadline=deadline)
            entry[f"vmap_{width}"] = {"compile_s": compile_s, "per_arch_s": per_arch,
                                      "archs": n}
            log(f"{name}: vmap {width}: compile {compile_s:.1f} s, {per_arch * 1e3:.2f} ms/arch")
        except Exception as error:  # noqa: BLE001
            entry[f"vmap_{width}"] = {"error": repr(error)[:500]}
            log(f"{name}: vmap {width} failed: {error!r}"[:300])
    if jit_archs and time.time() < deadline:
        try:
            cost, n = time_per_architecture_jit(proxies, genotypes, batch, key, config=config,
                                                count=jit_archs)
            entry["per_arch_jit"] = {"compile_and_run_s": cost, "archs": n}
            log(f"{name}: one jit per architecture: {cost:.2f} s each (compile + run)")
        except Exception as error:  # noqa: BLE001
            entry["per_arch_jit"] = {"error": repr(error)[:500]}
            log(f"{name}: per-architecture jit failed: {error!r}"[:300])
    return entry


@in_x64
def score_archs(scorer, genotypes, batch, key, *, deadline, width=0, chunk=256):
    """Scores (n_done, n_proxies), chunk by chunk until the deadline: sequential calls with
    asynchronous dispatch (width 0) or vmap over ``width`` genotypes at a time."""
    images, labels = batch
    batched = vmapped(scorer) if width else None
    rows, seconds = [], []
    for start in range(0, len(genotypes), chunk):
        if time.time() > deadline:
            break
        began = time.perf_counter()
        part = genotypes[start:start + chunk]
        if width:
            pad = (-len(part)) % width
            padded = np.concatenate([part, np.repeat(part[-1:], pad, 0)]) if pad else part
            outputs = [batched(jnp.asarray(padded[i:i + width]), images, labels, key)
                       for i in range(0, len(padded), width)]
            outputs = jax.device_get(outputs)
            values = np.concatenate([np.stack([np.asarray(o[p], np.float64)
                                               for p in scorer.proxies], 1)
                                     for o in outputs])[:len(part)]
        else:
            outputs = jax.device_get([scorer.compiled(jnp.asarray(g), images, labels, key)
                                      for g in part])
            values = np.asarray([[float(o[p]) for p in scorer.proxies] for o in outputs])
        per_arch = (time.perf_counter() - began) / len(part)
        rows.append(values)
        seconds += [per_arch] * len(part)
    values = np.concatenate(rows) if rows else np.zeros((0, len(scorer.proxies)))
    return values, seconds


def write_scores(out, name, dataset, proxies, genotypes, values, seconds, batch_id,
                 **scorer_options):
    """One part file in results-store format, so these rows resume and correlate like
    ``zcjax score-space``'s (same run identities: :func:`zcjax.bulk.run_settings`)."""
    genotypes = genotypes[:len(values)]
    settings = bulk.run_settings("nb201", scorer_options, proxies)[2]
    runs = {p: store.RunIdentity("nb201", dataset, batch_id, 0, settings[p]) for p in proxies}
    index = [int(np.ravel_multi_index(tuple(g), (len(nb201.OPS),) * nb201.NUM_EDGES))
             for g in genotypes]
    rows = bulk.score_rows(runs, proxies, nb201.arch_strings(genotypes), index, values, seconds)
    store.write_part(out, f"{name}.parquet", rows)
    log(f"wrote {name}.parquet: {len(values)} archs x {len(proxies)} proxies")


def run_scoring(out, name, dataset, proxies, config, genotypes, *, deadline, width):
    key = jax.random.key(0)
    # ImageNet16-120: the bundled ImageNet images carry pseudo-labels in 0..119, one per
    # source image class (zcjax.data.sample_batch documents the draw).
    batch = zcjax.data.sample_batch(dataset, BATCH_SIZE, key=jax.random.key(0))
    scorer = zcjax.make_scorer("nb201", proxies, config=config)
    began = time.perf_counter()
    values, seconds = score_archs(scorer, genotypes, batch, key, deadline=deadline, width=width)
    elapsed = time.perf_counter() - began
    write_scores(out, name, dataset, scorer.proxies, genotypes, values, seconds,
                 bulk.batch_fingerprint(*batch), config=config)
    summary = {"archs": len(values), "seconds_with_compile": elapsed, "width": width,
               "non_finite": int(np.sum(~np.isfinite(values)))}
    if len(values) > 1:  # the first chunk includes compilation; the rest is throughput
        chunk_seconds = np.asarray(seconds)
        summary["per_arch_s_after_first_chunk"] = float(np.median(chunk_seconds[-1]))
    log(f"{name}: {len(values)} archs in {elapsed:.1f} s (compile included), width {width}")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--budget", type=float, default=520.0, help="seconds for everything")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny network and samples (a CPU check of this script)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # The same program built twice (a phase's own scorer) compiles once.
    bulk.use_compilation_cache("/tmp/zcjax-gpu-check-cache")
    begin = time.time()
    end = begin + args.budget
    report = {"devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
              "backend": jax.default_backend()}
    log(f"devices {report['devices']}, jax {jax.__version__}")
    small = nb201.Config(channels=(4, 8, 16), cells_per_stage=1)

    def config_for(info):
        base = small if args.smoke else nb201.Config()
        return nb201.Config(channels=base.channels, cells_per_stage=base.cells_per_stage,
                            num_classes=info.num_classes, image_size=info.image_size)

    def save():
        report["log"] = LOG
        report["wall_s"] = time.time() - begin
        (args.out / "timings.json").write_text(json.dumps(report, indent=2))

    batch = zcjax.data.sample_batch("cifar10", BATCH_SIZE, key=jax.random.key(0))
    key = jax.random.key(0)
    cifar10 = config_for(zcjax.data.DATASETS["cifar10"])
    widths = (4,) if args.smoke else (8, 32)
    budget = args.budget
    timings = report.setdefault("strategies", {})
    phases = report.setdefault("scoring", {})
    try:  # 1. T-CET(SNIP) compiled once, then the whole space with it
        timings["tcet_snip"] = measure("tcet_snip", ("tcet_snip",), cifar10, batch, key,
                                       deadline=begin + 0.12 * budget, widths=())
        save()
        space = nb201.all_genotypes()[:64] if args.smoke else nb201.all_genotypes()
        phases["full-tcet_snip-cifar10"] = run_scoring(
            args.out, "full-tcet_snip-cifar10", "cifar10", ("tcet_snip",), cifar10, space,
            deadline=begin + 0.30 * budget, width=0)
    except Exception:  # noqa: BLE001 - keep going
        log(traceback.format_exc()[-2000:])
    save()
    # 2. The reproduction set on a seeded sample, each dataset with its images and classes.
    sample = nb201.sample(jax.random.key(SAMPLE_SEED), 16 if args.smoke else SAMPLE_SIZE)
    for number, dataset in enumerate(DATASETS, start=1):
        try:
            phases[f"repro-{dataset}"] = run_scoring(
                args.out, f"repro-{dataset}", dataset, REPRODUCTION,
                config_for(zcjax.data.DATASETS[dataset]), sample,
                deadline=begin + (0.30 + 0.20 * number) * budget, width=0)
        except Exception:  # noqa: BLE001
            log(traceback.format_exc()[-2000:])
        save()
    # 3. vmap over genotypes and one jit per architecture (their compiles are the slow
    # part, so they come last), then the other proxy sets compiled once.
    try:
        timings["tcet_snip"].update(measure("tcet_snip", ("tcet_snip",), cifar10, batch, key,
                                            deadline=end - 60, widths=widths, jit_archs=2,
                                            sequential=False))
    except Exception:  # noqa: BLE001
        log(traceback.format_exc()[-2000:])
    save()
    for name, proxies in PROXY_SETS.items():
        if name == "tcet_snip" or time.time() > end - 30:
            continue
        try:
            timings[name] = measure(name, proxies, cifar10, batch, key, deadline=end - 20,
                                    widths=(), jit_archs=0)
        except Exception:  # noqa: BLE001
            log(traceback.format_exc()[-2000:])
        save()
    log(f"done in {time.time() - begin:.0f} s")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
