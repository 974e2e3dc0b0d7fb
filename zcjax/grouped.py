"""Vmap over architectures that share their leading edges' ops (an accelerator strategy).

Vmapping the compiled-once scorer over whole genotypes turns every edge's ``lax.switch``
into a select that runs all candidate ops. Grouping the architectures by the ops of their
first ``shared_edges`` edges keeps those edges' indices unbatched: their ``switch`` stays a
conditional that runs only the chosen op, once per group instead of once per architecture
(on a GPU each conditional costs a device-to-host sync), and only the remaining edges run
every op. NB201 in base-5 order (:func:`zcjax.spaces.nb201.all_genotypes`) falls into
groups of ``5 ** (6 - shared_edges)`` consecutive architectures.

The space must offer the ``edge_ops`` capability (:class:`zcjax.space.SearchSpace`: a
genotype is one op index per edge, every combination valid, and the compiled ``apply``
takes it as a tuple of per-edge scalars; NB201 does). Scores equal the sequential scorer's up to
float32 reassociation: the key is shared, so every architecture gets the same
initialisation as when scored alone.

A GPU strategy: on one H200 it scores NB201 with T-CET(SNIP) in 8-9 ms per architecture
with 4 shared edges, against 12.4 ms for vmap over whole genotypes and 29 ms for
sequential calls (bench/RESULTS.md). On a CPU, where a conditional costs nothing, it is
slower than sequential calls (2.8x at a small NB201 size): use ``make_scorer`` or
``bulk.score_space`` there.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from zcjax import data
from zcjax.api import Scorer, in_x64


def groups(genotypes: np.ndarray, shared_edges: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(shared ops (shared_edges,), member row indices)`` per distinct leading-ops prefix,
    in order of first appearance."""
    genotypes = np.asarray(genotypes, np.int32)
    prefixes, first, inverse = np.unique(genotypes[:, :shared_edges], axis=0,
                                         return_index=True, return_inverse=True)
    for group in np.argsort(first):
        yield prefixes[group], np.flatnonzero(inverse.ravel() == group)


def _edge_layout(scorer: Scorer) -> tuple[int, int]:
    """(edges, ops per edge) of the scorer's space, which must offer ``edge_ops``."""
    space = scorer.space
    if scorer.compiled is None or not space.offers("edge_ops"):
        raise ValueError(f"grouped_vmap needs a space compiled once whose network takes "
                         f"per-edge genotypes (one that offers edge_ops, e.g. NB201); "
                         f"space {space.name!r} does not")
    edges = len(space.edge_ops(space.sample(jax.random.key(0), 1)[0]))
    # edge_ops declares every combination of ops valid: num_archs = ops ** edges.
    ops = round(space.num_archs ** (1 / edges))
    if ops ** edges != space.num_archs:
        raise ValueError(f"space {space.name!r} offers edge_ops, so its {space.num_archs} "
                         f"architectures must be every combination of ops on its {edges} "
                         "edges; they are not")
    return edges, ops


def _check_supported(scorer: Scorer, shared_edges: int) -> tuple[int, int]:
    edges, ops = _edge_layout(scorer)
    if not 0 < shared_edges < edges:
        raise ValueError(f"shared_edges must be in 1..{edges - 1} for space "
                         f"{scorer.space.name!r}, got {shared_edges}")
    return edges, ops


@functools.lru_cache(maxsize=16)
def grouped_vmap(scorer: Scorer, shared_edges: int):
    """``f(shared (k,), varying (B, E - k), images, labels, key) -> outputs`` with a
    leading axis B: ``scorer.compiled`` vmapped over the varying edges only (jitted; call
    it through :func:`zcjax.api.in_x64`, like ``scorer.compiled``). Cached per scorer, so
    repeated calls reuse one compiled program."""
    _check_supported(scorer, shared_edges)

    def one(shared, varying, images, labels, key):
        ops = tuple(shared[edge] for edge in range(shared_edges))
        ops += tuple(varying[edge] for edge in range(varying.shape[0]))
        return scorer.compiled(ops, images, labels, key)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, None, None, None)))


def score_grouped(scorer: Scorer, genotypes: np.ndarray, batch, key: jax.Array,
                  shared_edges: int) -> dict[str, np.ndarray]:
    """Every architecture's scores, ``{proxy: (len(genotypes),)}`` in input order.

    Every group is padded with its last member to the size of a full group
    (``ops ** varying edges``), so any subset of the space runs one program.
    """
    edges, ops = _check_supported(scorer, shared_edges)
    genotypes = np.stack([scorer.space.check_arch(genotype) for genotype in genotypes])
    images, labels = data.validate_batch(batch, image_size=scorer.network.image_size,
                                         num_classes=scorer.network.num_classes)
    images = images.astype(jnp.float32)
    function = in_x64(grouped_vmap(scorer, shared_edges))
    members_list, pending = [], []
    width = ops ** (edges - shared_edges)
    for shared, members in groups(genotypes, shared_edges):
        varying = genotypes[members, shared_edges:]
        padded = np.concatenate([varying, np.repeat(varying[-1:], width - len(members), 0)])
        pending.append(function(jnp.asarray(shared), jnp.asarray(padded), images, labels, key))
        members_list.append(members)
    outputs = jax.device_get(pending)
    scores = {name: np.full(len(genotypes), np.nan) for name in scorer.proxies}
    for members, output in zip(members_list, outputs):
        for name in scorer.proxies:
            scores[name][members] = np.asarray(output[name], np.float64)[:len(members)]
    return scores
