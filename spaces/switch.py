"""One compiled choice among candidate ops: ``lax.switch`` under custom VJPs.

Every search space that keeps the genotype as data picks each edge's op with
``jax.lax.switch``. Differentiating ``lax.switch`` directly keeps zero-filled residuals
of every branch not taken (946 MB and +0.8 s per NB201 architecture at batch 64, see
DESIGN.md); :func:`switched` saves only the operands and recomputes the chosen branch in
the backward pass, and its pullback gets the same treatment one order up, so GraSP's
reverse-over-reverse keeps no residuals of branches not taken either.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

Array = jax.Array


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def switched(branches: Sequence[Callable[..., Any]], index: Array, *operands: Any) -> Any:
    """``branches[index](*operands)`` with only the chosen branch run, forward and backward.

    Args:
      branches: the candidate ops, pure functions of ``operands`` with outputs of one
        structure, shape and dtype. They must not close over traced values (build them
        from static configuration only).
      index: int scalar, which branch (clamped to the valid range like ``lax.switch``).
      *operands: the branches' (differentiable) arguments, any pytrees.

    Returns:
      The chosen branch's output.
    """
    return jax.lax.switch(index, branches, *operands)


def _switched_fwd(branches, index, *operands):
    return switched(branches, index, *operands), (index, operands)


def _switched_bwd(branches, residuals, cotangents):
    index, operands = residuals
    return (None,) + _switched_pullback(branches, index, operands, cotangents)


def _pullbacks(branches):
    """Per branch: recompute its forward and pull ``cotangents`` back through it."""

    def pullback(function):
        return lambda operands, cotangents: jax.vjp(function, *operands)[1](cotangents)

    return [pullback(function) for function in branches]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _switched_pullback(branches, index, operands, cotangents):
    return jax.lax.switch(index, _pullbacks(branches), operands, cotangents)


def _switched_pullback_fwd(branches, index, operands, cotangents):
    outputs = _switched_pullback(branches, index, operands, cotangents)
    return outputs, (index, operands, cotangents)


def _switched_pullback_bwd(branches, residuals, second_cotangents):
    index, operands, cotangents = residuals

    def second_order(pullback):
        def pull(operands, cotangents, second_cotangents):
            return jax.vjp(pullback, operands, cotangents)[1](second_cotangents)

        return pull

    second = [second_order(pullback) for pullback in _pullbacks(branches)]
    return (None,) + jax.lax.switch(index, second, operands, cotangents, second_cotangents)


_switched_pullback.defvjp(_switched_pullback_fwd, _switched_pullback_bwd)
switched.defvjp(_switched_fwd, _switched_bwd)
