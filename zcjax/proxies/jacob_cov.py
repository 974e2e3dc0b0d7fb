"""jacob_cov: correlation of the input Jacobians across the batch.

Reference: Mellor et al., "Neural Architecture Search without Training" (v1), ICML 2021;
foresight's ``jacob_cov``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from zcjax import linalg
from zcjax.proxies.base import ProxyInputs, ProxyOutput, scalar

EIGENVALUE_OFFSET = 1e-5


def jacob_cov(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """-sum_i [log(l_i + k) + 1/(l_i + k)], l = eigenvalues of corrcoef(J), k = 1e-5.

    J (N x D) = d(sum of logits)/dx per sample from ONE batched backward (train-mode BN
    couples the samples, as in the reference). The correlation matrix is symmetric, so
    its eigenvalues come from ``eigvalsh`` (the reference's general ``eig`` returns the
    same values up to round-off; it also runs on accelerators). In ``inputs.wide`` (float64).
    A constant Jacobian row gives NaN, which stays NaN (a result, not an error).
    """
    jacobian = passes["input_gradients"]
    jacobian = jacobian.reshape(jacobian.shape[0], -1).astype(inputs.wide)
    eigenvalues = linalg.eigvalsh(jnp.corrcoef(jacobian))
    shifted = eigenvalues + EIGENVALUE_OFFSET
    return scalar(inputs, -jnp.sum(jnp.log(shifted) + 1.0 / shifted))
