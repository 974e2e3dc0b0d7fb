"""Gradient-based saliency proxies: grad_norm, snip, plain, fisher, grasp, l2_norm.

Conventions of the reference implementations (foresight / alethiometer, PAPER.md
section 2): one minibatch, mean cross-entropy, BatchNorm with batch statistics, only the
weights of Conv/Linear layers enter a score, unused candidate ops never count.

References:
  Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021.
  Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019.
  Wang et al., "Picking Winning Tickets Before Training by Preserving Gradient Flow"
  (GraSP), ICLR 2020. Theis et al., "Faster gaze prediction with dense networks and
  Fisher pruning", 2018.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from zcjax.network import layer_weights
from zcjax.proxies.base import ProxyInputs, ProxyOutput, layer_sum, per_layer
from zcjax.proxies.passes import LossGradients


def grad_norm(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Per layer ||dL/dW||_F; network score: their sum."""
    grads: LossGradients = passes["loss_gradients"]
    return layer_sum(inputs, per_layer(jnp.linalg.norm, grads.weight_grads))


def snip(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Per layer sum |W * dL/dW| (connection sensitivity)."""
    return layer_sum(inputs, per_layer(jnp.sum, snip_saliencies(inputs, passes)))


def plain(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Per layer sum W * dL/dW (signed)."""
    grads: LossGradients = passes["loss_gradients"]
    weights = layer_weights(inputs.network, inputs.params)
    return layer_sum(inputs, per_layer(lambda w, g: jnp.sum(w * g), weights, grads.weight_grads))


def fisher(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Channel-wise Fisher information of each layer's (pre-BN) output.

    Per output channel k: 0.5 * mean_n (sum_{h,w} a * dL/da)^2; the reference broadcasts
    each channel's value to the channel's fan-in weights before summing, so a channel
    counts ``fan_in`` times.
    """
    grads: LossGradients = passes["loss_gradients"]

    def layer_fisher(layer, activation, gradient):
        spatial = tuple(range(1, activation.ndim - 1))
        per_sample = jnp.sum(activation * gradient, axis=spatial)  # (N, C)
        per_channel = 0.5 * jnp.mean(jnp.square(per_sample), axis=0)
        return jnp.sum(per_channel) * layer.fan_in

    values = per_layer(layer_fisher, inputs.network.layers, grads.outputs, grads.output_grads)
    return layer_sum(inputs, values)


def l2_norm(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Per layer ||W||_F (no data needed)."""
    return layer_sum(inputs, per_layer(jnp.linalg.norm, layer_weights(inputs.network,
                                                                      inputs.params)))


def snip_saliencies(inputs: ProxyInputs, passes: Mapping[str, Any]) -> list:
    """Per-weight SNIP saliency |W * dL/dW| per layer."""
    grads: LossGradients = passes["loss_gradients"]
    weights = layer_weights(inputs.network, inputs.params)
    return [jnp.abs(w * g) for w, g in zip(weights, grads.weight_grads)]


def grasp_saliencies(inputs: ProxyInputs, passes: Mapping[str, Any]) -> list:
    """Per-weight GraSP saliency -W * (H g) per layer."""
    weights = layer_weights(inputs.network, inputs.params)
    return [-w * hg for w, hg in zip(weights, passes["grasp_hessian_gradients"])]


def grasp(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Per layer sum of -W * (H g), g = dL/dW (see ``passes.grasp_hessian_gradients``)."""
    return layer_sum(inputs, per_layer(jnp.sum, grasp_saliencies(inputs, passes)))
