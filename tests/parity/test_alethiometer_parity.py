"""Parity of zcjax's classic proxies with the PyTorch reference implementations.

The same weights (a zcjax init, copied into a PyTorch NAS-Bench-201 ``TinyNetwork``, see
``torch_nb201.py``) and the same minibatch are scored by

* alethiometer 1.1.2's ``calc_zc_metrics`` (the paper's toolkit, which vendors foresight's
  proxies): grad_norm, snip, grasp, synflow, nwot_relu (= zcjax ``naswot``), both the
  network scores and the per-layer values (``aggregate=False``);
* short PyTorch re-derivations of foresight's fisher, jacob_cov, plain and l2_norm, which
  alethiometer does not ship.

Same-precision checks, both at the small config (channels 4/8/16, one cell per stage,
batch 16 of ``sample_batch``) over 13 architectures:

* float32 (what each side runs by default): 1e-4 relative for the float32 gradient
  proxies, network score and every layer; grasp and plain (signed sums that cancel) are held
  to 1e-4 of the L1 norm of their per-weight terms instead; synflow (float64 on both sides)
  1e-9; naswot: the binary-code kernels equal exactly and the log-determinant to float32.
* float64 on both sides (zcjax's proxy functions on float64 params and images, the same
  reference code on ``model.double()``): 1e-9, which shows that every float32 difference is
  round-off and not a difference in what is computed.

``test_full_size_parity`` repeats this on the full-size network (where float32 is
ill-conditioned, see FULL_TOLERANCE).

alethiometer's package ``__init__`` imports torchvision (dataset helpers only), so its
metric code is loaded under a bare package module (:func:`load_alethiometer`).
Its nwot_relu hooks every module whose class name contains "ReLU" -- on NB201 that is
each ``nn.ReLU`` AND each ``ReLUConvBN`` wrapping one, so the ReLUs inside ReLUConvBN count
twice (the original NASWOT code does the same). See :func:`test_naswot_reference_quirk`.

Run: ``pytest tests/parity -q -s``.
"""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ARCHS, PARITY_INIT_DRAW, SMALL, SMALL_BATCH, TINY, aleth,  # noqa: E402
                    init_variables, relative_error, to_torch, torch, torch_model)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import zcjax  # noqa: E402
from zcjax.proxies import base as proxy_base  # noqa: E402
from zcjax.proxies import naswot as naswot_lib  # noqa: E402
from zcjax.proxies import passes as passes_lib  # noqa: E402
from zcjax.proxies import registry  # noqa: E402
from zcjax.spaces import nb201  # noqa: E402

import torch_nb201  # noqa: E402

ALETH_PROXIES = {  # zcjax name -> alethiometer name
    "grad_norm": "grad_norm",
    "snip": "snip",
    "grasp": "grasp",
    "synflow": "synflow",
}
DERIVED_PROXIES = ("fisher", "jacob_cov", "plain", "l2_norm")
ZCJAX_PROXIES = tuple(ALETH_PROXIES) + ("naswot",) + DERIVED_PROXIES
TOLERANCE = {
    "grad_norm": 1e-4, "snip": 1e-4, "grasp": 1e-4, "fisher": 1e-4, "plain": 1e-4,
    "l2_norm": 1e-4, "jacob_cov": 1e-4, "synflow": 1e-9,
    # alethiometer returns slogdet of a float32 K as float32: the log-determinant is
    # rounded to float32 (the kernels themselves are compared exactly).
    "naswot": 1e-6,
}
DEFAULTS = registry.validate_options(registry.names(), {})  # every option at its default
# Both sides in float64 (every proxy but synflow, already float64, and naswot, integer).
FLOAT64_PROXIES = ("grad_norm", "snip", "grasp", "fisher", "plain", "l2_norm", "jacob_cov")
FLOAT64_TOLERANCE = dict.fromkeys(FLOAT64_PROXIES, 1e-9)
# The full-size network (16 cells and blocks of train-mode BN) is ill-conditioned in
# float32: the float32 reference itself differs from its own float64 run by up to ~1.6e-3
# in one layer's value (1e-5 to 2e-4 in network scores), and a few ReLU inputs sit within
# round-off of 0. There the float32 comparison gets these bounds and the float64
# comparison (FLOAT64_TOLERANCE) carries the exactness claim.
FULL_TOLERANCE = {name: 1e-9 if name == "synflow" else 1e-2 for name in ZCJAX_PROXIES}
FULL_SCORE_TOLERANCE = {name: 1e-9 if name == "synflow" else 1e-3 for name in ZCJAX_PROXIES}
# Signed per-weight saliencies: their sums cancel (|grasp| is ~1e-3 of sum |W * Hg| on some
# networks), so the float32 reference itself is only accurate to ~eps * sum |terms|. These
# are held to the tolerance relative to sum |terms| (the L1 of the summands); the plain
# relative error is printed as well.
SIGNED = ("grasp", "plain")


def _scaled_error(a, b, l1) -> float:
    """|a - b| / max(L1 of b's terms, tiny); NaN == NaN counts as equal."""
    if a == b or (np.isnan(a) and np.isnan(b)):
        return 0.0
    error = abs(float(a) - float(b)) / max(float(l1), TINY)
    return float("inf") if np.isnan(error) else error


# ---------------------------------------------------------------------------
# The PyTorch side
# ---------------------------------------------------------------------------
def layer_total(value) -> float:
    value = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return float(value.double().sum())


def alethiometer_scores(model, x, y):
    """alethiometer's per-layer values (module order) for the gradient proxies, and the
    per-layer L1 norms of the per-weight grasp saliencies."""
    names = list(ALETH_PROXIES.values())
    per_layer = aleth.calc_zc_metrics(names, model, [(x, y)], torch.device("cpu"),
                                      aggregate=False)
    values = {name: np.array([layer_total(v) for v in per_layer[ref]])
              for name, ref in ALETH_PROXIES.items()}
    l1 = {"grasp": np.array([layer_total(v.detach().abs()) for v in per_layer["grasp"]])}
    return values, l1


def alethiometer_naswot(model, x, y):
    """(K, log|det K|) of alethiometer's nwot_relu."""
    out = aleth.calc_zc_metrics(["nwot_relu_Kmats"], model, [(x, y)], torch.device("cpu"),
                                aggregate=False)["nwot_relu_Kmats"]
    kernel, logdet = out
    return np.asarray(kernel), float(logdet)


def rederived_scores(model, x, y):
    """foresight's fisher, plain, l2_norm (per layer) and jacob_cov, re-derived in PyTorch.

    BatchNorm in train mode (batch statistics), mean cross-entropy, float32.
    """
    model = copy.deepcopy(model).train()
    layers = torch_nb201.layer_modules(model)
    outputs = {}

    def keep(module, inputs, output):
        output.retain_grad()
        outputs[module] = output

    handles = [layer.register_forward_hook(keep) for layer in layers]
    model.zero_grad()
    _, logits = model(x)
    torch.nn.functional.cross_entropy(logits, y).backward()
    for handle in handles:
        handle.remove()

    fisher, plain, plain_l1, l2 = [], [], [], []
    for layer in layers:
        act, grad = outputs[layer].detach(), outputs[layer].grad
        if grad is None:
            grad = torch.zeros_like(act)
        per_sample = act * grad
        if per_sample.dim() > 2:
            per_sample = per_sample.sum(dim=tuple(range(2, per_sample.dim())))
        per_channel = 0.5 * per_sample.pow(2).mean(0)
        fan_in = int(np.prod(layer.weight.shape[1:]))  # foresight broadcasts to weight[k]
        fisher.append(layer_total(per_channel) * fan_in)
        weight_grad = layer.weight.grad if layer.weight.grad is not None else torch.zeros_like(
            layer.weight)
        plain.append(layer_total(layer.weight.detach() * weight_grad))
        plain_l1.append(layer_total((layer.weight.detach() * weight_grad).abs()))
        l2.append(float(layer.weight.detach().norm()))

    # jacob_cov (foresight): one batched backward of sum of logits, w.r.t. the input.
    model.zero_grad()
    inputs = x.clone().requires_grad_(True)
    _, logits = model(inputs)
    logits.backward(torch.ones_like(logits))
    # None where no path reaches the input (a TNB101 cell of zeros builds new tensors).
    grad = inputs.grad if inputs.grad is not None else torch.zeros_like(inputs)
    jacobian = grad.detach().reshape(inputs.shape[0], -1).numpy()
    try:
        with np.errstate(all="ignore"):
            correlations = np.corrcoef(jacobian)
            eigenvalues, _ = np.linalg.eig(correlations)
            k = 1e-5
            jacob_cov = float(np.real(-np.sum(np.log(eigenvalues + k) + 1.0 / (eigenvalues + k))))
    except np.linalg.LinAlgError:  # NaN in the matrix: foresight catches and returns NaN
        jacob_cov = float("nan")
    values = {"fisher": np.array(fisher), "plain": np.array(plain), "l2_norm": np.array(l2),
              "jacob_cov": jacob_cov}
    return values, {"plain": np.array(plain_l1)}


# ---------------------------------------------------------------------------
# The zcjax side
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _kernels_fn(config):
    network = nb201.network(config)

    def kernels(variables, genotype, images, labels):
        inputs = proxy_base.ProxyInputs(network, variables, genotype, images, labels,
                                        jax.random.key(0), DEFAULTS)
        relu = passes_lib.activations(inputs)["relu"]
        flat = jax.tree_util.tree_flatten_with_path(
            relu, is_leaf=lambda node: isinstance(node, tuple) and len(node) == 1)[0]
        once, quirk = 0.0, 0.0
        for _, values in flat:
            for relu_inputs, relu_modules, wrapper_modules in values:
                per_site = relu_inputs.reshape((-1,) + relu_inputs.shape[relu_modules.ndim:])
                site_kernels = jax.vmap(
                    lambda site: naswot_lib.binary_code_kernel(site, jnp.float64))(per_site)
                relus = relu_modules.reshape(-1).astype(site_kernels.dtype)
                wrappers = wrapper_modules.reshape(-1).astype(site_kernels.dtype)
                once = once + jnp.tensordot(relus, site_kernels, 1)
                quirk = quirk + jnp.tensordot(relus + wrappers, site_kernels, 1)
        return once, quirk

    return jax.jit(kernels)


def zcjax_kernels(config, variables, genotype, batch):
    """naswot's kernel K rebuilt from zcjax's own ReLU-input captures (BN at init), twice:
    each ReLU module counted once (``naswot_wrapper_hooks=False``), and with the
    ``ReLUConvBN`` wrappers counted too (the default), as alethiometer's class-name hook
    does on NB201's classes."""
    images, labels = batch
    with jax.enable_x64(True):
        once, quirk = _kernels_fn(config)(variables, jnp.asarray(genotype, jnp.int32),
                                          images, labels)
        return np.asarray(once), np.asarray(quirk)


def _active_outputs(outputs, names):
    """{name: (score, per-layer values of the active layers or None)} as NumPy."""
    result = {}
    for name in names:
        score, per_layer, active = outputs[name]
        active = np.asarray(active)
        result[name] = (float(score),
                        None if per_layer is None else np.asarray(per_layer)[active])
    return result


@functools.lru_cache(maxsize=None)
def _float64_runner(config):
    """zcjax's proxies on float64 parameters and images (the scorer itself is float32)."""
    network = nb201.network(config)
    resolved = registry.resolve(FLOAT64_PROXIES)

    def run(variables, genotype, images, labels):
        inputs = proxy_base.ProxyInputs(network, variables, genotype, images, labels,
                                        jax.random.key(1), DEFAULTS)
        return {name: tuple(out) for name, out in registry.run(resolved, inputs).items()}

    return jax.jit(run)


class Parity:
    """Scores of one architecture from zcjax and from the PyTorch side, same weights.

    ``float64=False``: zcjax's float32 scorer against the float32 references, plus the
    naswot kernels. ``float64=True``: zcjax's proxy functions on float64 parameters and
    images against the same reference code on ``model.double()`` (no round-off to hide
    behind: any difference is a difference in what is computed).
    """

    def __init__(self, scorer, config, arch, batch, key, *, float64=False, variables=None):
        genotype = nb201.encode(arch)
        self.arch = arch
        if variables is None:
            variables = init_variables(scorer, batch, key)
        x, y = to_torch(batch)
        model = torch_model(arch, config, variables["params"])
        self.num_layers = len(torch_nb201.layer_modules(model))
        if float64:
            with jax.enable_x64(True):
                outputs = _float64_runner(config)(
                    jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), variables),
                    jnp.asarray(genotype, jnp.int32), jnp.asarray(batch[0], jnp.float64),
                    jnp.asarray(batch[1]))
                self.zcjax = _active_outputs(jax.tree.map(np.asarray, outputs),
                                             FLOAT64_PROXIES)
            model, x = model.double(), x.double()
        else:
            outputs = {name: tuple(out) for name, out in scorer(genotype, batch, key).items()}
            self.zcjax = _active_outputs(outputs, ZCJAX_PROXIES)
        self.reference = {}
        values, self.l1 = alethiometer_scores(model, x, y)
        for name, per_layer in values.items():
            self.reference[name] = (float(per_layer.sum()), per_layer)
        values, l1 = rederived_scores(model, x, y)
        self.l1.update(l1)
        for name, value in values.items():
            total = value if np.ndim(value) == 0 else float(np.sum(value))
            self.reference[name] = (total, None if np.ndim(value) == 0 else value)
        if float64:
            return
        # naswot: alethiometer on the faithful NB201 class names (its hook also fires on
        # every ReLUConvBN: zcjax's default), and with the wrapper renamed so only nn.ReLU
        # is hooked (zcjax's naswot_wrapper_hooks=False).
        plain_model = torch_model(arch, config, variables["params"], nb201_class_names=False)
        self.aleth_kernel, self.relu_only_logdet = alethiometer_naswot(plain_model, x, y)
        self.quirk_kernel, quirk_logdet = alethiometer_naswot(model, x, y)
        self.reference["naswot"] = (quirk_logdet, None)
        self.zcjax_kernel, self.zcjax_quirk_kernel = zcjax_kernels(config, variables, genotype,
                                                                   batch)

    def errors(self, name, *, scaled=False):
        """(network-score error, max per-layer error or None): relative to |reference|, or
        with ``scaled`` relative to the L1 norm of the per-weight terms (SIGNED proxies)."""
        (score, layers), (ref_score, ref_layers) = self.zcjax[name], self.reference[name]
        assert ref_layers is None or len(layers) == len(ref_layers) == self.num_layers, (
            name, self.arch, None if layers is None else len(layers), self.num_layers)
        if scaled:
            l1 = self.l1[name]
            return (_scaled_error(score, ref_score, l1.sum()),
                    max((_scaled_error(a, b, s) for a, b, s in zip(layers, ref_layers, l1)),
                        default=0.0))
        layer_error = None if ref_layers is None else relative_error(layers, ref_layers)
        return relative_error(score, ref_score), layer_error


def _max_errors(results, name, scaled=False):
    errors = [r.errors(name, scaled=scaled) for r in results]
    layers = [e[1] for e in errors if e[1] is not None]
    return max(e[0] for e in errors), (max(layers) if layers else None)


def report(title, results, proxies):
    """Print the max deviations per proxy; return {proxy: (score, per-layer)} as checked
    (relative to |reference|, or to the L1 of the terms for SIGNED proxies)."""
    table = {}
    print(f"\n{title}: max deviation over {len(results)} archs")
    print(f"  {'proxy':<10} {'score rel':>10} {'layer rel':>10} {'score/L1':>10} "
          f"{'layer/L1':>10}")
    text = lambda value: "-" if value is None else f"{value:.2e}"  # noqa: E731
    for name in proxies:
        score, layer = _max_errors(results, name)
        scaled = _max_errors(results, name, scaled=True) if name in SIGNED else (None, None)
        table[name] = scaled if name in SIGNED else (score, layer)
        print(f"  {name:<10} {text(score):>10} {text(layer):>10} {text(scaled[0]):>10} "
              f"{text(scaled[1]):>10}")
    return table


def check(table, results, tolerance, score_tolerance=None):
    score_tolerance = tolerance if score_tolerance is None else score_tolerance
    failures = []
    for name, (score, layer) in table.items():
        for index, (value, what, bound) in enumerate(((score, "score", score_tolerance[name]),
                                                      (layer, "per-layer", tolerance[name]))):
            if value is not None and not value <= bound:
                worst = max(results, key=lambda r: r.errors(name, scaled=name in SIGNED)[index]
                            or 0.0)
                failures.append(f"{name} {what}: {value:.3e} > {bound:.0e} "
                                f"(worst arch {worst.arch}: zcjax {worst.zcjax[name][0]!r}, "
                                f"reference {worst.reference[name][0]!r})")
    assert not failures, "\n".join(failures)


def make_scorer(config):
    return zcjax.make_scorer("nb201", ZCJAX_PROXIES, config=config, per_layer=True,
                             init_draw=PARITY_INIT_DRAW)


def parities(scorer, config, archs, batch, key, **options):
    variables = init_variables(scorer, batch, key)
    return [Parity(scorer, config, arch, batch, key, variables=variables, **options)
            for arch in archs]


@pytest.fixture(scope="module")
def small_batch():
    return zcjax.data.sample_batch("cifar10", SMALL_BATCH)


@pytest.fixture(scope="module")
def small_results(small_batch):
    scorer = make_scorer(SMALL)
    key = jax.random.key(0)
    return parities(scorer, SMALL, ARCHS, small_batch, key)


def test_alethiometer_proxies(small_results):
    table = report("zcjax vs alethiometer 1.1.2 (small config, float32)", small_results,
                   tuple(ALETH_PROXIES) + ("naswot",))
    check(table, small_results, TOLERANCE)


def test_rederived_proxies(small_results):
    table = report("zcjax vs PyTorch re-derivations (small config, float32)", small_results,
                   DERIVED_PROXIES)
    check(table, small_results, TOLERANCE)


def test_float64_exact(small_batch):
    """Both sides in float64: zcjax computes what the reference computes, to round-off."""
    scorer = make_scorer(SMALL)
    key = jax.random.key(0)
    results = parities(scorer, SMALL, ARCHS, small_batch, key, float64=True)
    table = report("zcjax vs references, both float64 (small config)", results,
                   FLOAT64_PROXIES)
    check(table, results, FLOAT64_TOLERANCE)


def test_naswot_codes_identical(small_results):
    """zcjax's kernels equal alethiometer's exactly: on the faithful NB201 classes (the
    ReLUConvBN wrappers hooked too, zcjax's default) and on a network whose only
    ReLU-named modules are nn.ReLU (``naswot_wrapper_hooks=False``)."""
    for result in small_results:
        np.testing.assert_array_equal(result.zcjax_quirk_kernel, result.quirk_kernel,
                                      err_msg=result.arch)
        np.testing.assert_array_equal(result.zcjax_kernel, result.aleth_kernel,
                                      err_msg=result.arch)


def test_naswot_relu_modules_only_option(small_batch, small_results):
    """``naswot_wrapper_hooks=False`` is alethiometer's naswot on a model whose wrapper
    class is renamed; the default deviates from it by the double count (printed)."""
    scorer = zcjax.make_scorer("nb201", ["naswot"], config=SMALL, naswot_wrapper_hooks=False,
                               init_draw=PARITY_INIT_DRAW)
    worst_option, worst_default = 0.0, 0.0
    for result in small_results:
        ours = float(scorer(nb201.encode(result.arch), small_batch, jax.random.key(0))["naswot"])
        worst_option = max(worst_option, relative_error(ours, result.relu_only_logdet))
        worst_default = max(worst_default,
                            relative_error(result.zcjax["naswot"][0], result.relu_only_logdet))
    print(f"\nnaswot, ReLU modules only: max relative deviation {worst_option:.3e}; the "
          f"default (wrappers counted) differs from it by up to {worst_default:.3e}")
    assert worst_option <= TOLERANCE["naswot"]


@pytest.mark.parametrize("cells", [1, 2])
def test_layer_order_matches_module_order(cells):
    """zcjax's active layers, in table order, are the torch model's Conv2d/Linear modules in
    registration order (alethiometer's per-layer order), matched by identity and shape."""
    config = nb201.Config(channels=(4, 8, 16), cells_per_stage=cells)
    network = nb201.network(config)
    for arch in ARCHS:
        model = torch_nb201.TinyNetwork(arch, config.channels, cells)
        expected = []
        stage, cell, position = 0, 0, {}
        for index, module in enumerate(model.cells):
            if isinstance(module, torch_nb201.ResNetBasicblock):
                stage, cell = stage + 1, 0
                position[index] = f"reduction_{stage}"
            else:
                position[index] = f"cells_{stage}/{cell}"
                cell += 1
        for name, module in model.named_modules():
            if not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                continue
            parts = name.split(".")
            if parts[0] == "stem":
                layer = "stem/conv"
            elif parts[0] == "classifier":
                layer = "classifier"
            elif parts[2] in ("conv_a", "conv_b"):
                layer = f"{position[int(parts[1])]}/{parts[2]}"
            elif parts[2] == "downsample":
                layer = f"{position[int(parts[1])]}/shortcut"
            else:  # cells.i.layers.edge.op.1
                target, source = torch_nb201.EDGES[int(parts[3])]
                size = module.kernel_size[0]
                layer = f"{position[int(parts[1])]}/edge_{target}_{source}/conv{size}x{size}"
            shape = tuple(module.weight.shape)
            shape = shape[::-1] if module.weight.dim() == 2 else tuple(
                shape[i] for i in (2, 3, 1, 0))
            expected.append((layer, shape))
        active = np.asarray(network.active(nb201.encode(arch)))
        ours = [(layer.name, layer.shape) for layer, on in zip(network.layers, active) if on]
        assert ours == expected, arch
