"""Synflow: synaptic flow of |W| on an all-ones input, in float64.

Reference: Tanaka et al., "Pruning neural networks without any data by iteratively
conserving synaptic flow", NeurIPS 2020; foresight/alethiometer's zero-cost version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from zcjax.proxies.base import ProxyInputs, ProxyOutput, layer_sum, per_layer
from zcjax.proxies.passes import SynflowGradients


def synflow_saliencies(inputs: ProxyInputs, passes: Mapping[str, Any]) -> list:
    """Per-weight synflow saliency |W * dR/dW| per layer (float64)."""
    grads: SynflowGradients = passes["synflow_gradients"]
    return [jnp.abs(w * g) for w, g in zip(grads.weights, grads.weight_grads)]


def synflow(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Per layer sum |W * dR/dW|, R = sum of logits for |W|, no BN, one all-ones image."""
    return layer_sum(inputs, per_layer(jnp.sum, synflow_saliencies(inputs, passes)))
