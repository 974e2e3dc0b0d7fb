"""Speed of scoring NB201 architectures, every strategy side by side with the PyTorch
reference, in one run.

  python -m pytest bench/ --benchmark-only --benchmark-json bench/results.json
  python bench/summarize.py bench/results.json   # the table of bench/RESULTS.md

Strategies, for each proxy set of ``PROXY_SETS``:

* ``compiled_once``: zcjax's supernet, one compilation for the whole space; the timed
  rounds are the run time per architecture after warm-up over a fixed sample (the
  compilation, first call included, is in ``extra_info``);
* ``per_arch_jit``: the per-architecture reference module under one jit per architecture
  (compile + run per architecture: what every new architecture costs);
* ``vmap``: the supernet vmapped over ``VMAP_WIDTH`` genotypes (``switch`` becomes
  ``select``: every candidate op runs); time per architecture;
* ``pytorch``: alethiometer 1.1.2 / foresight-equivalent code (``torch_reference.py``),
  every proxy on its own model copy, ``torch.set_num_threads`` = the cores.

Set ``ZCJAX_BENCH_SMOKE=1`` for a small network and batch (a quick CI-sized check).
"""

from __future__ import annotations

import itertools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zcjax
from zcjax.api import in_x64
from zcjax.proxies import CLASSIC
from zcjax.spaces import nb201

from strategies import record, time_compiled_once  # bench/

pytest.importorskip("pytest_benchmark")

SMOKE = os.environ.get("ZCJAX_BENCH_SMOKE") == "1"
CONFIG = nb201.Config(channels=(4, 8, 16), cells_per_stage=1) if SMOKE else nb201.Config()
BATCH_SIZE = 16 if SMOKE else 64
ARCHS = 6 if SMOKE else 20
VMAP_WIDTH = 2 if SMOKE else 4
JIT_ARCHS = 2 if SMOKE else 3
SAMPLE = nb201.sample(jax.random.key(0), ARCHS)
BATCH = zcjax.data.sample_batch("cifar10", BATCH_SIZE)
KEY = jax.random.key(0)
PROXY_SETS = {
    "classic": CLASSIC,
    "tcet_snip": ("tcet_snip",),
    "synflow": ("synflow",),
    "jacob_cov": ("jacob_cov",),
    "naswot": ("naswot",),
}


def _info(benchmark, proxy_set, strategy, **extra):
    record(benchmark, proxy_set, strategy, batch_size=BATCH_SIZE, smoke=SMOKE, **extra)


@pytest.mark.parametrize("proxy_set", list(PROXY_SETS))
def test_compiled_once(benchmark, proxy_set):
    scorer = zcjax.make_scorer("nb201", PROXY_SETS[proxy_set], config=CONFIG)
    timing = time_compiled_once(benchmark, scorer, SAMPLE, BATCH, KEY)
    _info(benchmark, proxy_set, "compiled_once", **timing)


@pytest.mark.parametrize("proxy_set", ["tcet_snip", "synflow"])
def test_per_arch_jit(benchmark, proxy_set):
    from strategies import per_architecture_scorer

    images, labels = BATCH
    genotypes = itertools.cycle(tuple(int(op) for op in g) for g in SAMPLE[:JIT_ARCHS])

    def compile_and_run():
        scorer = per_architecture_scorer(PROXY_SETS[proxy_set], config=CONFIG)
        return jax.device_get(scorer(next(genotypes), images, labels, KEY))

    benchmark.pedantic(compile_and_run, rounds=JIT_ARCHS, iterations=1)
    _info(benchmark, proxy_set, "per_arch_jit")


@pytest.mark.parametrize("proxy_set", ["tcet_snip", "synflow", "naswot"])
def test_vmap(benchmark, proxy_set):
    scorer = zcjax.make_scorer("nb201", PROXY_SETS[proxy_set], config=CONFIG)
    batched = in_x64(jax.jit(jax.vmap(scorer.compiled, in_axes=(0, None, None, None))))
    images, labels = BATCH
    chunks = itertools.cycle([SAMPLE[i:i + VMAP_WIDTH]
                              for i in range(0, len(SAMPLE) - VMAP_WIDTH + 1, VMAP_WIDTH)])

    def run():
        return jax.device_get(batched(jnp.asarray(next(chunks)), images, labels, KEY))

    started = time.perf_counter()
    run()
    compile_s = time.perf_counter() - started
    benchmark.pedantic(run, rounds=3, iterations=1)
    # Rounds time VMAP_WIDTH architectures: summarize.py divides by archs_per_round.
    _info(benchmark, proxy_set, "vmap", compile_and_first_run_s=compile_s,
          archs_per_round=VMAP_WIDTH)


@pytest.mark.parametrize("proxy_set", list(PROXY_SETS))
def test_pytorch(benchmark, proxy_set):
    torch = pytest.importorskip("torch")
    torch_reference = pytest.importorskip("torch_reference")
    torch.set_num_threads(os.cpu_count() or 1)
    names = [n for n in PROXY_SETS[proxy_set] if n in torch_reference.COVERED]
    images, labels = BATCH
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    models = itertools.cycle([torch_reference.model_for(arch, CONFIG)
                              for arch in nb201.arch_strings(SAMPLE)])
    benchmark.pedantic(lambda: torch_reference.score(names, next(models), x, y),
                       rounds=len(SAMPLE), iterations=1, warmup_rounds=1)
    _info(benchmark, proxy_set, "pytorch", proxies=names, threads=torch.get_num_threads())


def test_one_forward_backward(benchmark):
    """One cross-entropy forward+backward of the compiled supernet (the unit cost the
    issue compares with PyTorch's ~0.25 s on this machine)."""
    network = nb201.network(CONFIG)
    images, labels = BATCH
    variables = network.init(KEY, images[:1])

    @jax.jit
    def loss_and_grad(params, genotype):
        def loss(params):
            logits = network.apply({"params": params}, genotype, images)
            return zcjax.proxies.base.cross_entropy(logits, labels)

        return jax.value_and_grad(loss)(params)

    genotypes = itertools.cycle(jnp.asarray(g) for g in SAMPLE)
    jax.block_until_ready(loss_and_grad(variables["params"], next(genotypes)))
    benchmark.pedantic(
        lambda: jax.block_until_ready(loss_and_grad(variables["params"], next(genotypes))),
        rounds=len(SAMPLE), iterations=1, warmup_rounds=1)
    _info(benchmark, "forward_backward", "compiled_once")


def test_one_forward_backward_pytorch(benchmark):
    torch = pytest.importorskip("torch")
    torch_reference = pytest.importorskip("torch_reference")
    torch.set_num_threads(os.cpu_count() or 1)
    images, labels = BATCH
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    models = itertools.cycle([torch_reference.model_for(arch, CONFIG)
                              for arch in nb201.arch_strings(SAMPLE)])

    def step():
        model = next(models)
        model.zero_grad()
        _, logits = model(x)
        torch.nn.functional.cross_entropy(logits, y).backward()

    benchmark.pedantic(step, rounds=len(SAMPLE), iterations=1, warmup_rounds=1)
    _info(benchmark, "forward_backward", "pytorch")
