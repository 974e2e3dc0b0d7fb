"""Speed of scoring NB201 architectures: the compiled-once supernet against one
compilation per architecture (the reference path), side by side in one run.

Run: ``python -m pytest bench/ --benchmark-only`` (not part of the default test command).
Compile time is reported separately (``extra_info``); the benchmarked rounds are the
per-architecture run time after warm-up, cycling through a fixed sample of architectures.
"""

import itertools
import time

import jax
import pytest

import zcjax
from zcjax.proxies import CLASSIC
from zcjax.spaces import nb201

pytest.importorskip("pytest_benchmark")

SAMPLE = nb201.sample(jax.random.key(0), 20)
BATCH = zcjax.data.sample_batch("cifar10", 64)
PROXY_SETS = {
    "classic": CLASSIC,
    "tcet_snip": ("tcet_snip",),
    "synflow": ("synflow",),
    "jacob_cov": ("jacob_cov",),
    "naswot": ("naswot",),
}


@pytest.mark.parametrize("proxy_set", list(PROXY_SETS))
def test_compiled_once(benchmark, proxy_set):
    scorer = zcjax.make_scorer("nb201", PROXY_SETS[proxy_set])
    started = time.perf_counter()
    jax.block_until_ready(scorer(SAMPLE[0], BATCH))
    benchmark.extra_info["compile_and_first_run_s"] = time.perf_counter() - started
    genotypes = itertools.cycle(SAMPLE)
    benchmark.pedantic(lambda: jax.block_until_ready(scorer(next(genotypes), BATCH)),
                       rounds=len(SAMPLE), iterations=1, warmup_rounds=1)
    benchmark.extra_info["compilations"] = scorer.compiled._cache_size()


def test_one_jit_per_architecture_forward_backward(benchmark):
    """The cost the compiled-once design avoids: compile + run for every architecture."""
    network = nb201.reference_network()
    images, labels = BATCH
    variables = network.init(jax.random.key(0))

    def loss_and_grad(params, genotype):
        def loss(params):
            logits = network.apply({"params": params}, genotype, images)
            return zcjax.proxies.base.cross_entropy(logits, labels)

        return jax.value_and_grad(loss)(params)

    genotypes = itertools.cycle(tuple(int(op) for op in g) for g in SAMPLE[:5])

    def fresh_compile_and_run():
        step = jax.jit(loss_and_grad, static_argnums=1)
        return jax.block_until_ready(step(variables["params"], next(genotypes)))

    benchmark.pedantic(fresh_compile_and_run, rounds=5, iterations=1)
