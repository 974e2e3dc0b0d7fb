"""The proxy conformance suite: every registered proxy, the same checks (jit == eager,
same key -> same value, finite on real images, unused parameters never count, shared
passes change nothing), plus proxy-specific checks against direct computations."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zcjax
from conftest import ARCHS, CONNECTED_ARCHS, SMALL, TINY
from zcjax import api, proxies
from zcjax.network import layer_weights
from zcjax.proxies import passes
from zcjax.proxies.base import ProxyInputs
from zcjax.proxies.naswot import binary_code_kernel, safe_logdet
from zcjax.spaces import nb201

ALL = proxies.names()
# One proxy per distinct computation (the SNR modes differ only in pure post-processing,
# covered by test_aggregate): the checks that compile each proxy separately use these.
CORE = proxies.CLASSIC + ("nwot", "lnwot", "snip_snr", "synflow_snr", "grasp_snr", "tcet_snip",
                          "tcet_synflow", "zen", "zico", "epe_nas", "ntk", "linear_regions")
# GraSP's saliencies are second-order and cancel in the sum: float32 round-off differs
# between two XLA fusions of the same computation by ~1e-4 there (alethiometer's own
# float32 and float64 runs differ as much).
# Counts bounded by the batch size (distinct activation patterns; SWAP's sign patterns of
# tiny_batch's 8 images): another key may well give the same count, so only "same key ->
# same value" applies.
SATURATING = ("linear_regions", "swap", "swap_reg")
ROUND_OFF = {name: 1e-3 for name in ALL if "grasp" in name}
DECOMPOSABLE = ("grad_norm", "snip", "grasp", "fisher", "synflow", "plain", "l2_norm")
# Every option at its default, but SWAP's sample count: tiny_batch holds 8 images.
OPTIONS = {"swap_samples": 8}
DEFAULTS = proxies.validate_options(ALL, OPTIONS)


@pytest.fixture(scope="module")
def tiny_network():
    """One network object, so tests that jit the same proxies share the program."""
    return nb201.network(TINY)


@pytest.fixture(scope="module")
def score_all(tiny_network, tiny_batch):
    """``score_all(arch, key, variables=None)``: every proxy's output, per layer, by one
    compiled program (the scorer's computation after the initialisation, which is
    ``variables`` when given): the checks that change the weights share it."""
    images, labels = tiny_batch
    resolved = proxies.resolve(ALL)
    program = jax.jit(lambda variables, genotype, key: api.proxy_outputs(
        tiny_network, resolved, variables, genotype, images, labels, key, DEFAULTS))
    init = jax.jit(lambda key: tiny_network.init(api.init_key(key), images[:1]))

    @api.in_x64  # the scorer's scope
    def run(arch, key, variables=None):
        variables = init(key) if variables is None else variables
        return jax.device_get(program(variables, jnp.asarray(nb201.encode(arch)), key))

    run.program = program
    return run


@pytest.fixture(scope="module")
def scored(score_all):
    """Every proxy on every test architecture, key 0."""
    return {arch: score_all(arch, jax.random.key(0)) for arch in ARCHS}


def _inputs(network, variables, arch, batch, key=jax.random.key(0)):
    images, labels = batch
    return ProxyInputs(network, variables, jnp.asarray(nb201.encode(arch)), images, labels, key,
                       DEFAULTS)


def _scores(names, inputs, separately):
    if separately:
        return {name: proxies.run([proxies.get(name)], inputs)[name].score for name in names}
    return {k: v.score for k, v in proxies.run(proxies.resolve(names), inputs).items()}


@functools.lru_cache(maxsize=None)
def _compiled(names, network, options, separately):
    """One jitted program per (proxies, network, options items): calls on new arrays reuse
    it."""
    return jax.jit(lambda arrays: _scores(names, ProxyInputs(network=network,
                                                             options=dict(options), **arrays),
                                          separately))


def _run(names, inputs, *, jit=True, separately=False):
    """Scores of ``names`` on ``inputs``; ``separately``: each proxy with its own passes."""
    with jax.enable_x64(True):
        if not jit:
            return _scores(names, inputs, separately)
        arrays = {field.name: getattr(inputs, field.name) for field in dataclasses.fields(inputs)
                  if field.name not in ("network", "options", "wide")}
        return _compiled(tuple(names), inputs.network, tuple(sorted(inputs.options.items())),
                         separately)(arrays)


def test_registry_holds_the_eleven_classic_proxies():
    assert set(proxies.CLASSIC) <= set(ALL)
    assert len(proxies.CLASSIC) == 11


def test_unknown_proxy_lists_the_valid_names():
    with pytest.raises(KeyError, match="unknown proxy 'snipp'.*grad_norm.*synflow"):
        proxies.resolve(["snip", "snipp"])
    with pytest.raises(KeyError, match="valid proxies"):
        zcjax.make_scorer("nb201", "snip,nope")


@pytest.mark.parametrize("arch", CONNECTED_ARCHS)
def test_every_proxy_is_finite_on_real_images(scored, arch):
    for name, output in scored[arch].items():
        assert np.isfinite(output.score), (name, arch)


def test_one_compilation_serves_every_architecture(score_all, scored):
    assert len(scored) == len(ARCHS)
    assert score_all.program._cache_size() == 1


def test_the_scorer_computes_what_the_suite_checks(scored, tiny_batch):
    scorer = zcjax.make_scorer("nb201", ("snip", "naswot", "params"), config=TINY)
    got = scorer(nb201.encode(CONNECTED_ARCHS[0]), tiny_batch, jax.random.key(0))
    for name, value in got.items():
        np.testing.assert_allclose(value, scored[CONNECTED_ARCHS[0]][name].score, rtol=1e-5,
                                   err_msg=name)


# Op-by-op execution costs ~15-80 s a proxy: CI runs one proxy of each pass (loss
# gradients, synflow, activations, Jacobian, T-CET's codes, per-class Jacobians), the
# rest are marked slow.
EAGER_IN_CI = ("grad_norm", "synflow", "naswot", "jacob_cov", "tcet_snip", "epe_nas")


@pytest.mark.parametrize("name", [name if name in EAGER_IN_CI
                                  else pytest.param(name, marks=pytest.mark.slow)
                                  for name in CORE])
def test_jit_equals_eager(scored, tiny_batch, name):
    network = nb201.network(TINY)
    arch = CONNECTED_ARCHS[0]
    variables = network.init(api.init_key(jax.random.key(0)), tiny_batch[0][:1])
    inputs = dataclasses.replace(_inputs(network, variables, arch, tiny_batch),
                                 key=api.noise_key(jax.random.key(0)))
    with jax.disable_jit():
        eager = _run([name], inputs, jit=False)[name]
    np.testing.assert_allclose(eager, scored[arch][name].score, rtol=ROUND_OFF.get(name, 2e-4))


@pytest.mark.parametrize("name", ALL)
def test_same_key_same_value_other_key_other_value(score_all, scored, name):
    again = score_all(CONNECTED_ARCHS[0], jax.random.key(0))[name].score
    assert again == scored[CONNECTED_ARCHS[0]][name].score
    other = score_all(CONNECTED_ARCHS[0], jax.random.key(1))[name].score
    if name in ("params", "flops", "vkdnw_dim"):  # counts of the genotype alone
        assert other == again
    elif name not in SATURATING:
        assert other != again


def test_unused_parameters_never_count(score_all, tiny_network):
    network = tiny_network
    arch = ARCHS[0]
    variables = network.init(jax.random.key(3))
    active = np.asarray(network.active(nb201.encode(arch)))
    # Scramble every parameter (conv and its BN) of every op the architecture does not use.
    noise = jax.random.key(4)
    params = jax.tree.map(lambda p: p, variables["params"])
    scrambled = 0
    for layer, used in zip(network.layers, active):
        if not used and "edge" in layer.name:
            edge = params[layer.param_path[0]][layer.param_path[1]]
            for part in (layer.param_path[2], "bn" + layer.param_path[2][4:]):
                for leaf, value in edge[part].items():
                    noise, sub = jax.random.split(noise)
                    edge[part][leaf] = value.at[layer.param_index].set(
                        3.0 * jax.random.normal(sub, value.shape[1:]))
                    scrambled += 1
    assert scrambled > 0
    before = score_all(arch, jax.random.key(0), variables)
    after = score_all(arch, jax.random.key(0), {"params": params})
    for name in ALL:
        np.testing.assert_allclose(after[name].score, before[name].score, rtol=1e-6,
                                   err_msg=name)


# Compiles every proxy of CORE on its own (~400 s on a 2-core CPU); in CI,
# test_jit_equals_eager holds one proxy of each pass, run alone, to the shared program.
@pytest.mark.slow
def test_sharing_passes_changes_nothing(scored, tiny_network, tiny_batch):
    arch = CONNECTED_ARCHS[1]
    network = tiny_network
    variables = network.init(api.init_key(jax.random.key(0)), tiny_batch[0][:1])
    inputs = dataclasses.replace(_inputs(network, variables, arch, tiny_batch),
                                 key=api.noise_key(jax.random.key(0)))
    separate = _run(CORE, inputs, separately=True)
    for name in CORE:
        np.testing.assert_allclose(separate[name], scored[arch][name].score,
                                   rtol=ROUND_OFF.get(name, 1e-5), err_msg=name)


@pytest.mark.parametrize("name", DECOMPOSABLE)
def test_per_layer_values_add_up_to_the_score(scored, name):
    for arch in ARCHS:
        output = scored[arch][name]
        assert output.per_layer.shape == (len(nb201.network(TINY).layers),)
        total = np.sum(np.where(output.active, output.per_layer, 0))
        np.testing.assert_allclose(total, output.score, rtol=1e-5)


def test_degenerate_architecture_gives_results_not_errors(scored):
    output = scored["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]
    assert np.isnan(float(output["jacob_cov"].score))  # constant Jacobian rows: NaN
    for name in ("snip", "grad_norm", "grasp", "synflow", "naswot"):
        assert float(output[name].score) == 0.0


# ------------------------------------------------------------ proxy-specific checks


def test_binary_code_kernel_and_safe_logdet():
    x = jax.random.normal(jax.random.key(0), (6, 2, 3, 5))
    codes = (np.asarray(x).reshape(6, -1) > 0).astype(np.float64)
    want = codes @ codes.T + (1 - codes) @ (1 - codes).T
    with jax.enable_x64(True):
        np.testing.assert_array_equal(binary_code_kernel(x, jnp.float64), want)
        np.testing.assert_allclose(safe_logdet(jnp.asarray(want)), np.linalg.slogdet(want)[1])
        assert safe_logdet(jnp.ones((3, 3))) == 0.0


def test_synflow_checks_the_float_it_is_given(tiny_batch):
    network = nb201.network(TINY)
    variables = network.init(jax.random.key(0), tiny_batch[0][:1])
    inputs = _inputs(network, variables, ARCHS[0], tiny_batch)
    with pytest.raises(ValueError, match="synflow runs in float64; ProxyInputs.wide is float32"):
        passes.synflow_gradients(dataclasses.replace(inputs, wide=jnp.float32))
    with pytest.raises(RuntimeError, match="only in x64.*in_x64"), pytest.warns(UserWarning):
        passes.synflow_gradients(inputs)  # float64 asked for outside x64


def test_in_x64_scopes_float64_to_the_call():
    ones = api.in_x64(lambda: jnp.ones(2, jnp.float64))
    assert ones().dtype == jnp.float64
    assert not jax.config.jax_enable_x64


def test_synflow_runs_in_float64_and_keeps_huge_values():
    with jax.enable_x64(True):
        out = zcjax.make_scorer("nb201", ["synflow"], per_layer=True)
        result = out(nb201.encode(ARCHS[2]), zcjax.data.sample_batch("cifar10", 2))["synflow"]
    assert result.per_layer.dtype == jnp.float64
    assert float(result.score) > 1e30 and np.isfinite(float(result.score))  # beyond float32


def test_jacob_cov_matches_numpy_on_the_same_jacobian(batch):
    network = nb201.network(SMALL)
    variables = network.init(jax.random.key(0))
    inputs = _inputs(network, variables, CONNECTED_ARCHS[0], batch)
    with jax.enable_x64(True):
        jacobian = np.asarray(jax.grad(lambda x: network.apply(variables, inputs.genotype,
                                                               x).sum())(inputs.images))
        got = _run(["jacob_cov"], inputs)["jacob_cov"]
    eigenvalues = np.real(np.linalg.eig(np.corrcoef(jacobian.reshape(len(jacobian), -1)))[0])
    want = -np.sum(np.log(eigenvalues + 1e-5) + 1 / (eigenvalues + 1e-5))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_snip_grad_norm_plain_l2_from_their_definitions(batch):
    network = nb201.network(SMALL)
    variables = network.init(jax.random.key(5))
    inputs = _inputs(network, variables, ARCHS[1], batch)
    images, labels = batch

    def loss(params):
        logits = nb201.reference_network(SMALL).apply({"params": params}, inputs.genotype, images)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels])

    grads = layer_weights(network, jax.grad(loss)(variables["params"]))
    weights = layer_weights(network, variables["params"])
    active = np.asarray(network.active(inputs.genotype))
    pick = lambda values: sum(v for v, a in zip(values, active) if a)  # noqa: E731
    got = _run(["snip", "grad_norm", "plain", "l2_norm"], inputs)
    np.testing.assert_allclose(got["snip"], pick([np.abs(w * g).sum() for w, g in zip(weights, grads)]), rtol=1e-4)
    np.testing.assert_allclose(got["grad_norm"], pick([np.linalg.norm(g) for g in grads]), rtol=1e-4)
    np.testing.assert_allclose(got["plain"], pick([(w * g).sum() for w, g in zip(weights, grads)]), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(got["l2_norm"], pick([np.linalg.norm(w) for w in weights]), rtol=1e-5)


def test_params_and_flops_proxies_report_millions():
    out = zcjax.score(ARCHS[0], zcjax.data.sample_batch("cifar10", 2), proxies=("params", "flops"))
    assert out["params"] == pytest.approx(nb201.param_count(ARCHS[0]) / 1e6, rel=1e-6)
    assert out["flops"] == pytest.approx(nb201.flops(ARCHS[0]) / 1e6, rel=1e-6)


def test_options_change_what_they_say(tiny_batch):
    scorer = lambda **o: zcjax.make_scorer("nb201", ["synflow", "naswot"], config=TINY, **o)  # noqa: E731
    genotype = nb201.encode(CONNECTED_ARCHS[0])
    base = scorer()(genotype, tiny_batch)
    kept = scorer(synflow_reduction_bn=True)(genotype, tiny_batch)
    batch_bn = scorer(activation_bn="batch")(genotype, tiny_batch)
    assert kept["synflow"] != base["synflow"] and kept["naswot"] == base["naswot"]
    assert batch_bn["naswot"] != base["naswot"] and batch_bn["synflow"] == base["synflow"]
    with pytest.raises(TypeError, match="'synflow_bn'.*no registered proxy reads it"):
        zcjax.make_scorer("nb201", ["snip"], synflow_bn=True)
    with pytest.raises(TypeError, match="'activation_bn' is read by none of the requested "
                                        r"proxies \(snip\); proxies that read it: naswot"):
        zcjax.make_scorer("nb201", ["snip"], activation_bn="batch")
    with pytest.raises(ValueError, match="activation_bn='eval'.*'init', 'batch'"):
        zcjax.make_scorer("nb201", ["naswot"], activation_bn="eval")
