"""Scoring strategies the benchmarks compare with zcjax's compiled-once supernet.

The compiled-once scorer itself is :func:`zcjax.make_scorer`; vmap over genotypes is
``api.in_x64(jax.vmap(scorer.compiled, in_axes=(0, None, None, None)))``. What zcjax does
not ship is the per-architecture path: the space's reference module (Python control flow
on a static genotype) under one jit per architecture, built here from the scorer's public
pieces (:func:`zcjax.api.init_key`, :func:`zcjax.api.proxy_outputs`), so it computes what
``make_scorer`` computes.
"""

from __future__ import annotations

import itertools
import time

import jax
import numpy as np

from zcjax import api
from zcjax.proxies import registry
from zcjax.spaces import nb201


def per_architecture_scorer(proxies, *, config=nb201.Config(), **options):
    """``scorer(genotype_tuple, images, labels, key) -> {proxy: score}``, jitted with the
    genotype static: every new architecture compiles anew (it enters x64 itself).

    The parameters are the compiled network's initialisation for the key (the two modules
    share one parameter tree), initialised outside the per-architecture program.
    """
    init = jax.jit(nb201.network(config).init)
    network = nb201.reference_network(config)
    resolved = registry.resolve(proxies)
    validated = registry.validate_options(resolved, options)

    def score(genotype, variables, images, labels, key):
        outputs = api.proxy_outputs(network, resolved, variables, np.asarray(genotype, np.int32),
                                    images, labels, key, validated)
        return {name: out.score for name, out in outputs.items()}

    jitted = jax.jit(score, static_argnums=0)

    @api.in_x64
    def scorer(genotype, images, labels, key):
        variables = init(api.init_key(key), images[:1])
        return jitted(tuple(genotype), variables, images, labels, key)

    return scorer


def record(benchmark, proxy_set, strategy, **info):
    """Group a pytest-benchmark result under its proxy set, with what ``summarize.py``
    reads (``proxy_set``, ``strategy``; ``archs_per_round`` when a round is several)."""
    benchmark.group = proxy_set
    benchmark.extra_info.update(proxy_set=proxy_set, strategy=strategy, **info)


def time_compiled_once(benchmark, scorer, sample, batch, key) -> dict:
    """Time ``scorer`` (a :func:`zcjax.make_scorer` scorer) per architecture of ``sample``
    after its first call, which compiles; returns that call's seconds and the number of
    compilations, for :func:`record`."""
    started = time.perf_counter()
    scorer(sample[0], batch, key)
    compile_s = time.perf_counter() - started
    genotypes = itertools.cycle(sample)
    benchmark.pedantic(lambda: scorer(next(genotypes), batch, key), rounds=len(sample),
                       iterations=1, warmup_rounds=1)
    return {"compile_and_first_run_s": compile_s,
            "compilations": scorer.compiled._cache_size()}

