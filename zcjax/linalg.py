"""Matrix decompositions that cannot deadlock XLA:CPU: one LAPACK call per matrix.

jaxlib's CPU LAPACK kernels (``syevd``, ``getrf``, ``gesdd``) split a batch of matrices
into chunks on XLA's intra-op thread pool and block the calling pool thread until every
chunk is done. XLA:CPU runs independent thunks of one program concurrently on that same
pool, so once as many batched decompositions run at once as the pool has threads (2 on
a 2-core machine), each waits for chunks that only the others' blocked threads could run:
the program never completes, at 0% CPU (measured: TNB101 micro with meco + AZ-NAS +
jacob_cov, two ``dsyevd`` kernels each in ``ParallelBatchMap``'s wait; and twelve
batched eigvalsh/slogdet in one jitted function). A single matrix is never split, so
these functions run a batch as a loop of one-matrix calls (``lax.map``), also under
``jax.vmap``, which would otherwise batch the call again. The matrices here are at
most a few hundred wide, where splitting a batch across 2 threads gains little. On other
platforms (GPU: one batched solver kernel instead of a launch per matrix) a batch stays
one call (``lax.platform_dependent``).

Not differentiable: ``jax.grad`` through them raises (``custom_vmap`` has no reverse-mode
rule); no proxy takes a gradient through a spectrum.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

Array = jax.Array


def _one_matrix_at_a_time(decompose: Callable[[Array], object]) -> Callable[[Array], object]:
    """``decompose`` (batched like ``jnp.linalg``'s) made to loop over any batch on the CPU
    instead of calling LAPACK once with it (leading dims of the argument, or a
    ``jax.vmap`` axis)."""

    @custom_vmap
    def one(matrix):
        return decompose(matrix)

    def batch(matrices):
        return lax.platform_dependent(matrices, cpu=lambda m: lax.map(one, m),
                                      default=decompose)

    @one.def_vmap
    def _batched(axis_size, in_batched, matrix):
        (batched,) = in_batched
        out = batch(matrix) if batched else one(matrix)
        return out, jax.tree.map(lambda _: batched, out)

    def apply(matrices: Array):
        if matrices.ndim < 2:
            raise ValueError(f"expected a matrix or a batch of matrices, got shape "
                             f"{matrices.shape}")
        if matrices.ndim == 2:
            return one(matrices)
        lead = matrices.shape[:-2]
        out = batch(matrices.reshape((-1, *matrices.shape[-2:])))
        return jax.tree.map(lambda x: x.reshape((*lead, *x.shape[1:])), out)

    return apply


eigvalsh = _one_matrix_at_a_time(jnp.linalg.eigvalsh)
eigvalsh.__doc__ = """``jnp.linalg.eigvalsh`` (ascending), one LAPACK call per matrix."""

slogdet = _one_matrix_at_a_time(lambda m: tuple(jnp.linalg.slogdet(m)))
slogdet.__doc__ = """``(sign, log|det|)`` as ``jnp.linalg.slogdet``, one LAPACK call per matrix."""

svdvals = _one_matrix_at_a_time(lambda m: jnp.linalg.svd(m, compute_uv=False))
svdvals.__doc__ = """Singular values (descending), one LAPACK call per matrix."""
