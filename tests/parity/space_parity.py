"""What the parity tests of NB101, DARTS and TNB101 micro share: the float64 comparison of
logits, loss and gradients with an independent torch network, and the classic proxies
against the NB201 suite's reference code.
"""

from __future__ import annotations

import numpy as np

from common import relative_error, to_torch, torch  # first: torch present or a clear error

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from zcjax.proxies.base import cross_entropy  # noqa: E402

from test_alethiometer_parity import (TOLERANCE, _scaled_error,  # noqa: E402
                                      alethiometer_naswot, alethiometer_scores,
                                      rederived_scores)

SIGNED = ("grasp", "plain")  # signed sums that cancel: relative to the L1 of their terms


def loss_and_gradients(network):
    """Jitted ``(params, genotype, images, labels) -> ((mean cross-entropy, logits), grads)``."""

    def loss(params, genotype, images, labels):
        logits = network.apply({"params": params}, genotype, images)
        return cross_entropy(logits, labels), logits

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def assert_float64_equal(compiled, torch_model, variables, genotype, batch, *,
                         missing_grad_is_zero=False, floor=0.0):
    """Logits, loss and every parameter gradient of ``torch_model(params, dtype)`` (the
    torch network holding ``params``) equal zcjax's ``compiled`` (:func:`loss_and_gradients`)
    in float64 to 1e-9 of each tensor's largest magnitude, or of ``floor`` times the
    network's largest gradient where that is larger (gradients zero in exact arithmetic).

    zcjax's gradients are loaded into a second torch network, so they are compared
    parameter by parameter under the torch network's names: every parameter of the
    benchmark's network (zcjax's unchosen ops are not in it). A parameter the loss does not
    reach has no torch gradient: an error, or zero with ``missing_grad_is_zero``.
    """
    images, labels = batch
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), variables["params"])
        (loss, logits), grads = jax.device_get(compiled(
            params, jnp.asarray(genotype), jnp.asarray(images, jnp.float64),
            jnp.asarray(labels)))
    model = torch_model(jax.device_get(params), torch.float64)
    x, y = to_torch(batch)
    _, torch_logits = model(x.double())
    torch_loss = torch.nn.functional.cross_entropy(torch_logits, y)
    torch_loss.backward()
    reference = {}
    for name, parameter in model.named_parameters():
        if parameter.grad is None:
            assert missing_grad_is_zero, name
            reference[name] = torch.zeros_like(parameter).numpy()
        else:
            reference[name] = parameter.grad.numpy()
    largest = max(float(np.max(np.abs(g), initial=0.0)) for g in reference.values())

    def close(a, b, what, floor_value=0.0):
        b = np.asarray(b, np.float64)
        scale = max(float(np.max(np.abs(b), initial=0.0)), floor_value, 1e-30)
        assert float(np.max(np.abs(np.asarray(a) - b), initial=0.0)) <= 1e-9 * scale, what

    close(logits, torch_logits.detach().numpy(), "logits")
    close(loss, torch_loss.item(), "loss")
    named = dict(torch_model(grads, torch.float64).named_parameters())
    for name, want in reference.items():
        close(named[name].detach().numpy(), want, name, floor * largest)


def assert_classic_proxies_equal(ours, model, batch, proxies, per_layer):
    """zcjax's scorer output ``ours`` (``per_layer=True``) against alethiometer's grad_norm,
    snip, grasp, synflow, nwot_relu and the re-derived fisher, jacob_cov, plain, l2_norm of
    ``test_alethiometer_parity`` on the float32 torch ``model``, to the NB201 tolerances;
    per layer (active layers, module order) for the ``per_layer`` proxies and the signed
    ones."""
    x, y = to_torch(batch)
    reference, l1 = {}, {}
    values, grasp_l1 = alethiometer_scores(model, x, y)
    reference.update({name: (layers.sum(), layers) for name, layers in values.items()})
    derived, plain_l1 = rederived_scores(model, x, y)
    reference.update({name: (float(np.sum(value)), value if np.ndim(value) else None)
                      for name, value in derived.items()})
    l1.update(grasp_l1, **plain_l1)
    _, logdet = alethiometer_naswot(model, x, y)
    reference["naswot"] = (logdet, None)
    for name in proxies:
        score, layers, active = (np.asarray(v) for v in ours[name])
        want_score, want_layers = reference[name]
        if name in SIGNED:
            assert _scaled_error(score, want_score, l1[name].sum()) <= TOLERANCE[name], name
            assert max(map(_scaled_error, layers[active], want_layers, l1[name])) <= (
                TOLERANCE[name]), name
            continue
        assert relative_error(score, want_score) <= TOLERANCE[name], (name, score, want_score)
        if name in per_layer:
            assert relative_error(layers[active], want_layers) <= TOLERANCE[name], name
