"""TE-NAS's two indicators: the NTK condition number and the number of linear regions.

References:
  Chen, Gong and Wang, "Neural Architecture Search on ImageNet in Four GPU Hours: A
  Theoretically Inspired Perspective" (TE-NAS), ICLR 2021; as vendored by alethiometer
  1.1.2 (``ntk``, ``lrn``), which Xiang et al. (AutoML-Conf 2023) compare against.

Both run BatchNorm with batch statistics (TE-NAS's ``train_mode=True``; alethiometer's
copies are in train mode). Their inputs are the ``tenas_inputs`` option: ``"batch"`` (the
default: the minibatch itself, as every other proxy and TE-NAS's own code, which reads
its data loader) or ``"gaussian"`` (a standard-normal batch of the same shape drawn from
the key, which is what alethiometer feeds both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from zcjax import linalg
from zcjax.network import sown_values
from zcjax.proxies.base import ProxyInputs, ProxyOutput, scalar
from zcjax.proxies.naswot import binary_code_kernel

Array = jax.Array


def ntk(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """-lambda_max / lambda_min of the empirical NTK on the batch (higher is better).

    The reference negates the condition number the same way; it also passes the value
    through ``np.nan_to_num``, which zcjax does not: a non-finite value stays a result.
    """
    eigenvalues = linalg.eigvalsh(passes["ntk_gram"])  # ascending
    return scalar(inputs, -eigenvalues[-1] / eigenvalues[0])


def linear_regions(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """The number of distinct ReLU activation patterns among the batch's samples.

    A sample's pattern is the sign of every ReLU module's output (TE-NAS hooks
    ``nn.ReLU`` modules only). The reference counts sum_i 1 / #{j: pattern_j = pattern_i},
    which is the number of distinct patterns; two patterns are equal when their Hamming
    distance over all ReLU sites is zero (computed exactly from the code kernels).
    """
    distance = 0.0
    for relu_inputs, relu_modules, _ in sown_values(passes["tenas_activations"]["relu"]):
        site_shape = relu_modules.shape  # leading axes of stacked sites
        per_site = relu_inputs.reshape((-1,) + relu_inputs.shape[len(site_shape):])
        width = per_site[0, 0].size
        disagreements = width - jax.vmap(lambda site: binary_code_kernel(site, inputs.wide))(
            per_site)
        read = (relu_modules.reshape(-1) > 0).astype(disagreements.dtype)
        distance = distance + jnp.tensordot(read, disagreements, 1)
    same = (distance == 0).astype(inputs.wide)
    return scalar(inputs, jnp.sum(1.0 / jnp.sum(same, axis=1)))
