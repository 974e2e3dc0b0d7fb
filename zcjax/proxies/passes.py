"""The forward/backward passes that proxies share.

Each pass is a pure function ``pass(inputs, computed)`` of
:class:`~zcjax.proxies.base.ProxyInputs` and the results of the passes it requires,
declared with it in :data:`PASSES` (a :class:`~zcjax.proxies.base.Pass`: name, function,
``requires``, the options it reads). A scorer runs every pass its proxies need exactly
once, dependencies first: snip, grad_norm, plain, fisher and grasp all read
:func:`loss_gradients`; synflow and its SNR/T-CET variants read :func:`synflow_gradients`;
naswot, nwot and lnwot read :func:`activations`; ntk and linear_regions read
:func:`tenas_images`. Each option is declared here, beside the pass that reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from zcjax.network import layer_outputs, layer_weights
from zcjax.proxies.base import Pass, ProxyInputs, cross_entropy
from zcjax.proxies.options import Option

Array = jax.Array
_GAUSSIAN_STREAM = 7  # fold_in of the noise key: independent of zen's draws
# Parameters whose gradients enter the NTK: TE-NAS takes every parameter named "weight"
# (Conv and Linear kernels and the BatchNorm scales), not the biases.
NTK_PARAMETERS = ("kernel", "scale")


class LossGradients(NamedTuple):
    """One forward (BN batch statistics) and one backward of the mean cross-entropy.

    Attributes:
      loss: scalar.
      weight_grads: dL/dW per layer, aligned with the layer table.
      output_grads: dL/d(layer output) per layer (pre-BN outputs; zero perturbations).
      outputs: the layer outputs themselves.
    """

    loss: Array
    weight_grads: list[Array]
    output_grads: list[Array]
    outputs: list[Array]


def _zero_perturbations(intermediates_shapes):
    """A zero perturbation for every sown output (``sow`` stores 1-tuples)."""
    return jax.tree.map(
        lambda shapes: jnp.zeros(shapes[0].shape, shapes[0].dtype),
        intermediates_shapes,
        is_leaf=lambda node: isinstance(node, tuple),
    )


def loss_gradients(inputs: ProxyInputs, computed=None) -> LossGradients:
    network, genotype, images = inputs.network, inputs.genotype, inputs.images

    def capture(params, perturbations=None):
        variables = {"params": params}
        if perturbations is not None:
            variables["perturbations"] = perturbations
        return network.apply(variables, genotype, images, capture=True)

    shapes = jax.eval_shape(capture, inputs.params)[1]["intermediates"]
    perturbations = _zero_perturbations(shapes)

    def loss_fn(params, perturbations):
        logits, collections = capture(params, perturbations)
        return cross_entropy(logits, inputs.labels), collections["intermediates"]

    (loss, intermediates), (param_grads, perturbation_grads) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True
    )(inputs.params, perturbations)
    wrap = lambda tree: jax.tree.map(lambda leaf: (leaf,), tree)  # noqa: E731 - sow's layout
    return LossGradients(
        loss=loss,
        weight_grads=layer_weights(network, param_grads),
        output_grads=layer_outputs(network, wrap(perturbation_grads)),
        outputs=layer_outputs(network, intermediates),
    )


SYNFLOW_REDUCTION_BN = Option(
    "synflow_reduction_bn", False,
    doc="keep BatchNorm (batch statistics) inside the residual reduction blocks for "
        "synflow, as foresight's NB201 model does; the default removes every BatchNorm, as "
        "alethiometer does for a network without its own ``get_prunable_copy``.")


class SynflowGradients(NamedTuple):
    """float64 gradients of R = sum(logits) for |params|, BN removed, one all-ones image.

    Attributes:
      weights: |W| per layer (float64).
      weight_grads: dR/d|W| per layer (float64).
    """

    weights: list[Array]
    weight_grads: list[Array]


def synflow_gradients(inputs: ProxyInputs, computed=None) -> SynflowGradients:
    """Synflow's pass, in ``inputs.wide``, which must be float64 (and available: the
    scorer runs in x64).

    float32 overflows for about one NB201 network in ten (scores reach 1e45-1e60).
    BatchNorm in the reduction blocks per ``synflow_reduction_bn``.

    Raises:
      ValueError: ``inputs.wide`` is not float64.
      RuntimeError: float64 arrays are not available (called outside x64).
    """
    network = inputs.network
    if jnp.dtype(inputs.wide) != jnp.float64:
        raise ValueError(f"synflow runs in float64; ProxyInputs.wide is "
                         f"{jnp.dtype(inputs.wide).name}")
    params = jax.tree.map(lambda p: jnp.abs(p).astype(inputs.wide), inputs.params)
    ones = jnp.ones((1,) + inputs.images.shape[1:], inputs.wide)
    if ones.dtype != jnp.float64:
        raise RuntimeError("synflow runs in float64, which JAX offers only in x64: call the "
                           "scorer (it enters x64 itself) or wrap the call in zcjax.api.in_x64")
    reduction_bn = "batch" if inputs.options["synflow_reduction_bn"] else "off"

    def total_output(params):
        logits = network.apply({"params": params}, inputs.genotype, ones, bn="off",
                               reduction_bn=reduction_bn)
        return jnp.sum(logits)

    grads = jax.grad(total_output)(params)
    return SynflowGradients(layer_weights(network, params), layer_weights(network, grads))


ACTIVATION_BN = Option(
    "activation_bn", "init", choices=("init", "batch"),
    doc='BatchNorm mode for the activation-pattern proxies (naswot, nwot, lnwot, T-CET): '
        '``"init"`` (default) is eval mode at initialisation (running mean 0, variance '
        '1), what alethiometer runs (``net.eval()``); ``"batch"`` uses batch statistics.')


def activations(inputs: ProxyInputs, computed=None) -> dict[str, Any]:
    """One forward that captures layer outputs and ReLU inputs (no gradients).

    BatchNorm runs in ``activation_bn`` mode (alethiometer: eval mode).
    """
    _, collections = inputs.network.apply(
        inputs.variables, inputs.genotype, inputs.images, bn=inputs.options["activation_bn"],
        capture=True,
    )
    return collections


def input_gradients(inputs: ProxyInputs, computed=None) -> Array:
    """d(sum of logits)/d(images), one batched backward (train-mode BN couples samples)."""

    def total_output(images):
        return jnp.sum(inputs.network.apply(inputs.variables, inputs.genotype, images))

    return jax.grad(total_output)(inputs.images)


GRASP_TEMPERATURE = Option("grasp_temperature", 1.0,
                           doc="GraSP's logit temperature T (reference: 1).")


def grasp_hessian_gradients(inputs: ProxyInputs, computed) -> list[Array]:
    """H g per layer, g = dL/dW held constant (requires ``loss_gradients``).

    H g is the gradient of <stop_gradient(g), dL/dW> (reverse over reverse: the compiled
    space's custom VJPs rule out forward mode). The logits are divided by the temperature
    ``grasp_temperature`` in both gradients, as the reference does.
    """
    network, temperature = inputs.network, inputs.options["grasp_temperature"]

    def weight_grads(params):
        def loss(params):
            logits = network.apply({"params": params}, inputs.genotype, inputs.images)
            return cross_entropy(logits / temperature, inputs.labels)

        return layer_weights(network, jax.grad(loss)(params))

    if temperature == 1.0:
        first = computed["loss_gradients"].weight_grads
    else:
        first = weight_grads(inputs.params)
    first = [jax.lax.stop_gradient(g) for g in first]

    def gradient_dot(params):
        return sum(jnp.sum(g0 * g) for g0, g in zip(first, weight_grads(params)))

    return layer_weights(network, jax.grad(gradient_dot)(inputs.params))


ZICO_ACCUMULATE = Option(
    "zico_accumulate", False,
    doc="zico's second gradient is that of both half-batches (g1 + g2), as alethiometer's "
        "accumulating backward passes give; the default (False) uses each half's own "
        "gradient, as the original ZiCo code.")


def zico_gradients(inputs: ProxyInputs, computed=None) -> list[Array]:
    """dL/dW per layer for each half of the batch, stacked (2, ...): zico's two batches.

    BatchNorm normalises each half on its own, as two separate forwards do. With
    ``zico_accumulate`` the second entry is g1 + g2: alethiometer zeroes the
    gradients once before both backward passes, so they accumulate (the original ZiCo
    code zeroes them before each batch, the default here).
    """
    halves = 2
    images = inputs.images.reshape((halves, -1) + inputs.images.shape[1:])
    labels = inputs.labels.reshape(halves, -1)

    def weight_grads(images, labels):
        def loss(params):
            logits = inputs.network.apply({"params": params}, inputs.genotype, images)
            return cross_entropy(logits, labels)

        return layer_weights(inputs.network, jax.grad(loss)(inputs.params))

    grads = jax.vmap(weight_grads)(images, labels)
    if inputs.options["zico_accumulate"]:  # alethiometer: [g1, g1 + g2]
        grads = [jnp.stack([g[0], g[0] + g[1]]) for g in grads]
    return grads


TENAS_INPUTS = Option(
    "tenas_inputs", "batch", choices=("batch", "gaussian"),
    doc='what ntk and linear_regions see: ``"batch"`` (default) the minibatch, as '
        'TE-NAS\'s own code; ``"gaussian"`` a standard-normal batch of the same shape drawn '
        'from the key, as alethiometer does.')


def tenas_images(inputs: ProxyInputs, computed=None) -> Array:
    """The inputs of the TE-NAS indicators (``tenas_inputs``)."""
    if inputs.options["tenas_inputs"] == "batch":
        return inputs.images
    key = jax.random.fold_in(inputs.key, _GAUSSIAN_STREAM)
    return jax.random.normal(key, inputs.images.shape, inputs.images.dtype)


def ntk_gram(inputs: ProxyInputs, computed: Mapping[str, Any]) -> Array:
    """Theta_ij = <d f_i/dW, d f_j/dW>, f_i = sum of sample i's logits, (N, N).

    One forward, then one backward per sample (a vmapped pullback): BatchNorm couples the
    samples, so each row is the gradient of one sample's output through the whole-batch
    forward, as the reference's per-sample ``backward(retain_graph=True)``. Parameters of
    candidate ops the architecture does not use get exactly zero gradients and add
    nothing. The Gram matrix is accumulated in ``inputs.wide`` (float64).
    """
    network, genotype = inputs.network, inputs.genotype
    images = computed["tenas_images"]

    def per_sample_outputs(params):
        return jnp.sum(network.apply({"params": params}, genotype, images), axis=1)

    outputs, pullback = jax.vjp(per_sample_outputs, inputs.params)
    (grads,) = jax.vmap(pullback)(jnp.eye(outputs.shape[0], dtype=outputs.dtype))
    gram = 0.0
    for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]:
        if path[-1].key in NTK_PARAMETERS:
            rows = leaf.reshape(leaf.shape[0], -1).astype(inputs.wide)
            gram = gram + rows @ rows.T
    return gram


def tenas_activations(inputs: ProxyInputs, computed: Mapping[str, Any]) -> dict[str, Any]:
    """One forward on the TE-NAS inputs with batch-statistics BatchNorm, ReLU inputs sown."""
    _, collections = inputs.network.apply(
        inputs.variables, inputs.genotype, computed["tenas_images"], bn="batch", capture=True)
    return collections


PASSES = {
    built.name: built
    for built in (
        Pass("zico_gradients", zico_gradients, options=(ZICO_ACCUMULATE,)),
        Pass("loss_gradients", loss_gradients),
        Pass("grasp_hessian_gradients", grasp_hessian_gradients,
             requires=("loss_gradients",), options=(GRASP_TEMPERATURE,)),
        Pass("synflow_gradients", synflow_gradients, options=(SYNFLOW_REDUCTION_BN,)),
        Pass("activations", activations, options=(ACTIVATION_BN,)),
        Pass("input_gradients", input_gradients),
        Pass("tenas_images", tenas_images, options=(TENAS_INPUTS,)),
        Pass("ntk_gram", ntk_gram, requires=("tenas_images",)),
        Pass("tenas_activations", tenas_activations, requires=("tenas_images",)),
    )
}
