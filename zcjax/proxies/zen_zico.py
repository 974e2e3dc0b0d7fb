"""zen and zico: the two proxies that re-draw weights or data.

References:
  Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image Recognition", ICCV 2021.
  Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients",
  ICLR 2023. Both as vendored by alethiometer 1.1.2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from zcjax import nn
from zcjax.network import get_path, layer_outputs, masked, sown_values
from zcjax.proxies import reinit
from zcjax.proxies.base import ProxyInputs, ProxyOutput, layer_sum, scalar

Array = jax.Array
ZEN_MIXUP = 1e-2
BN_MOMENTUM = 0.1  # PyTorch's default


def zen_draws(inputs: ProxyInputs) -> tuple[dict[str, Any], Array, Array]:
    """Zen's random draws from the key: Gaussian variables, the input x and the noise e."""
    weights_key, x_key, mix_key = jax.random.split(inputs.key, 3)
    shape, dtype = inputs.images.shape, inputs.images.dtype
    variables = reinit.redrawn_variables(inputs.params, weights_key, reinit.unit_std,
                                         reinit.kernel_fan_ins(inputs.network))
    return (variables,
            jax.random.normal(x_key, shape, dtype), jax.random.normal(mix_key, shape, dtype))


def zen(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """log E_n sum |f(x) - f(x + 0.01 e)| + sum over BNs of log sqrt(mean running_var).

    f is the feature map before global pooling of the network re-initialised with
    Gaussian weights; x, e are Gaussian batches of the minibatch's shape (drawn from the
    key: the real images are not used). The reference reads BatchNorm's running variance
    after its two train-mode forwards (x, then the mixed input) with momentum 0.1 from 1:
    0.81 + 0.09 v(x) + 0.1 v(x'), v the unbiased batch variance; computed here from the
    two batches' BN inputs. Only the BNs the architecture uses count.
    """
    network = inputs.network
    variables, x, noise = zen_draws(inputs)
    mixed = x + ZEN_MIXUP * noise

    def features(images):
        _, collections = network.apply(variables, inputs.genotype, images, capture=True)
        layer_bn = [out for layer, out in zip(network.layers,
                                              layer_outputs(network, collections["intermediates"]))
                    if layer.batch_norm]
        return (get_path(collections["features"], ("pre_gap",))[0],
                layer_bn + sown_values(collections["features"].get("bn_input", {})))

    (f_x, bn_x), (f_mixed, bn_mixed) = features(x), features(mixed)
    distance = jnp.mean(jnp.sum(jnp.abs(f_x - f_mixed), axis=(1, 2, 3)))
    used = [used for layer, used in zip(network.layers, inputs.active) if layer.batch_norm]
    used += [True] * (len(bn_x) - len(used))
    log_scaling = 0.0
    for first, second, active in zip(bn_x, bn_mixed, used):
        decay = 1 - BN_MOMENTUM
        running_var = decay ** 2 + decay * BN_MOMENTUM * nn.batch_variance(first) \
            + BN_MOMENTUM * nn.batch_variance(second)
        log_scaling += jnp.where(active, jnp.log(jnp.sqrt(jnp.mean(running_var))), 0.0)
    return scalar(inputs, jnp.log(distance) + log_scaling)


def zico(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Per layer log sum_w mean|g_w| / std(g_w) over the two half-batch gradients.

    std is the population std of the signed gradients (NumPy's, as the reference);
    weights with std 0 are skipped, and a layer whose sum is 0 contributes 0. The two
    gradients are each half-batch's own (the original ZiCo code); alethiometer 1.1.2
    accumulates them (the ``zico_accumulate`` option reproduces that), and on a CPU its two
    stored gradients alias one buffer, so it returns 0 for every network there.
    """

    def layer_zico(grads):
        grads = grads.reshape(grads.shape[0], -1)
        std = jnp.std(grads, axis=0)
        mean_abs = jnp.mean(jnp.abs(grads), axis=0)
        nonzero = std != 0
        total = jnp.sum(jnp.where(nonzero, mean_abs / jnp.where(nonzero, std, 1), 0))
        return jnp.where(total != 0, jnp.log(jnp.where(total != 0, total, 1)), 0.0)

    values = jnp.stack([layer_zico(g) for g in passes["zico_gradients"]])
    return layer_sum(inputs, masked(values, inputs.active))
