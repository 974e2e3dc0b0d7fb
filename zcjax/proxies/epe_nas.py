"""EPE-NAS: per-class correlation of the input Jacobians.

Reference: Lopes, Alirezazadeh and Alexandre, "EPE-NAS: Efficient Performance
Estimation Without Training for Neural Architecture Search", ICANN 2021; as in
NAS-Bench-Suite-Zero (NASLib ``epe_nas.py``, from the authors' code).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from zcjax.proxies.base import ProxyInputs, ProxyOutput, scalar

CORRELATION_OFFSET = 1e-5
MANY_CLASSES = 100  # above this, the reference scores differences between classes


def epe_nas(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """From the per-class sums s_c = sum_ij log(|corr(J_i, J_j)| + 1e-5) over the samples
    i, j of class c (J = d(sum of logits)/dx, the jacob_cov Jacobian):

    * at most 100 classes (the network's output width): sum over present classes |s_c|;
    * more: with s_c divided by the class's sample count, sum over class pairs
      |s_c - s_c'| divided by the number of classes, counting only classes with at least
      two samples (the reference's ``len()`` of a single sample's 0-d correlation raises
      and skips that class); NaN when there are none (the reference's division by zero).

    A sample whose Jacobian is constant gives NaN correlations: its class's term, and the
    score, are NaN (a result).
    """
    jacobian = passes["input_gradients"]
    jacobian = jacobian.reshape(jacobian.shape[0], -1).astype(inputs.wide)
    log_corr = jnp.log(jnp.abs(jnp.corrcoef(jacobian)) + CORRELATION_OFFSET)
    num_classes = inputs.network.num_classes
    members = inputs.labels[None, :] == jnp.arange(num_classes)[:, None]  # (C, N)
    pairs = members[:, :, None] & members[:, None, :]
    # where, not a product: a NaN row must only reach its own class.
    per_class = jnp.sum(jnp.where(pairs, log_corr[None], 0.0), axis=(1, 2))
    counts = jnp.sum(members, axis=1)
    if num_classes <= MANY_CLASSES:
        return scalar(inputs, jnp.sum(jnp.where(counts > 0, jnp.abs(per_class), 0.0)))
    kept = counts >= 2
    mean = per_class / jnp.maximum(counts, 1)
    differences = jnp.abs(mean[:, None] - mean[None, :])
    total = jnp.sum(jnp.where(kept[:, None] & kept[None, :], differences, 0.0))
    return scalar(inputs, total / jnp.sum(kept))
