"""Initialisation held to its source: PyTorch's own ``reset_parameters()`` draws.

zcjax's at-init scores depend on the initial weights' distribution, which zcjax claims is
PyTorch's default. These tests hold every parameter that each space's ``network.init``
creates (found through the layer table ``network.layers`` and the params tree) to draws
that PyTorch itself makes for modules of the same shapes, with two-sample
Kolmogorov-Smirnov tests (``scipy.stats.ks_2samp``) at fixed seeds:

* Conv2d and Linear kernels, Linear biases: torch ``nn.Conv2d`` / ``nn.Linear`` of the
  same weight shape, ``reset_parameters()`` repeated (kaiming_uniform(a=sqrt(5)),
  i.e. U(+-1/sqrt(fan_in)), and U(+-1/sqrt(fan_in)) for the bias);
* BatchNorm scale and bias: equal to ``nn.BatchNorm2d.reset_parameters()``'s (1 and 0);
* zen's Gaussian re-initialisation, ``synthetic_batch`` and the TE-NAS Gaussian inputs:
  ``torch.nn.init.normal_`` / ``torch.randn`` draws (N(0, 1)).

Each pooled test (and each N(0, 1) test) shows, at the sample size it uses, that a
deliberately wrong distribution (torch's own draws with the bound times 1.1, a normal of
torch's variance; for N(0, 1) the standard deviation times 1.1 and a unit-variance
uniform) IS rejected, so the acceptance means something. Each network's init is compiled
once and run for NUM_KEYS keys. The init is the default one-draw one
(:mod:`zcjax.initialisation`); the last tests check how each ``init_draw`` draws.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
import shutil
from collections import defaultdict
from pathlib import Path

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from zcjax.data import synthetic_batch
from zcjax.network import get_path, layer_weights
from zcjax.proxies import base as proxy_base
from zcjax.proxies import passes, validate_options, zen_zico
from zcjax.spaces import darts, nb101, nb201, tnb101_micro

from conftest import import_or_unavailable

torch = import_or_unavailable("torch")

# A distribution is accepted when its KS p-value exceeds ACCEPT (Bonferroni over the tests
# of one family keeps the chance of a false alarm at a fixed seed small) and a wrong one
# must be rejected with a p-value below REJECT.
ACCEPT = 1e-3
REJECT = 1e-6
# Per network: inits with this many keys, and this many torch draws per zcjax value.
NUM_KEYS = 16
ZEN_KEYS = 2
TORCH_RATIO = 2
# Values per (kind, shape) that a test uses (the first ones: all are independent draws).
CAP = 50_000
NORMAL_CAP = 200_000

NB101_ARCH = ("(0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0,"
              " 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 3, 4,"
              " 4, 1)")
# Small configurations (tests/conftest.py SMALL for NB201, the spaces' test configs for the
# others) with a wide classifier, so that the Linear kernel and bias get enough samples.
NUM_CLASSES = 1000


def _networks():
    nb101_config = nb101.Config(stem_channels=4, stacks=2, cells_per_stack=2, image_size=16,
                                num_classes=NUM_CLASSES)
    return {
        "nb201": nb201.network(nb201.Config(channels=(4, 8, 16), cells_per_stage=2,
                                            num_classes=NUM_CLASSES)),
        "darts": darts.network(darts.Config(channels=4, layers=3, num_classes=NUM_CLASSES,
                                            image_size=16)),
        "tnb101_micro": tnb101_micro.network(tnb101_micro.Config(
            base_channels=4, macro="414", cells_per_layer=2, num_classes=NUM_CLASSES,
            image_size=16)),
        "nb101": nb101.network(nb101_config, nb101.signature(NB101_ARCH, nb101_config)),
    }


SPACES = ("nb201", "darts", "tnb101_micro", "nb101")

# zen's re-draws are one threefry per parameter array, a program that takes XLA:CPU
# ~1.5-2.5 minutes per network to optimise on a 2-core machine (so did the init, before it
# was one draw) and ~7 s without the backend optimisations and fusion
# emitters (measured on NB201 SMALL's init, whose values came out bit-identical to the
# default compile's). The random bits are integer arithmetic either way; the transform
# lo + (hi - lo) * u may round differently by an ulp of the bound (measured on a small
# Dense init), which no distribution test can see.
FAST_COMPILE = ({"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False},
                {"xla_backend_optimization_level": 0})  # if this jaxlib lacks the option


def fast_compile(lowered):
    for options in FAST_COMPILE:
        try:
            return lowered.compile(compiler_options=options)
        except Exception as error:  # noqa: BLE001 - an option this XLA does not know
            if "compile option" not in str(error):
                raise
    return lowered.compile()


def _inputs(network, params, key, options=None):
    size = network.image_size
    images = jnp.zeros((64, size, size, 3), jnp.float32)
    return proxy_base.ProxyInputs(network=network, variables={"params": params},
                                  genotype=None, images=images,
                                  labels=jnp.zeros(64, jnp.int32), key=key,
                                  options=options or {})


# zen re-draws by leaf name (kernel ~ N(0, 1), scale 1, any other leaf 0), and classify()
# holds every space's leaves to exactly those names; its draws are checked on NB201.
ZEN_SPACE = "nb201"


@pytest.fixture(scope="module")
def programs():
    """{space: (network, compiled init, compiled zen draws or None)}: each compiled once,
    the compiles in parallel threads (XLA compiles without holding the GIL)."""
    key = jax.random.key(0)
    lowered = {}
    for space, network in _networks().items():
        images = jnp.zeros((1, network.image_size, network.image_size, 3), jnp.float32)
        init = jax.jit(network.init).lower(key, images)
        # Parameters and key as arguments (a jitted function folds closed-over arrays).
        zen = (jax.jit(functools.partial(_zen_draws, network)).lower(init.out_info["params"], key)
               if space == ZEN_SPACE else None)
        lowered[space] = network, init, zen
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        futures = {space: (network, pool.submit(fast_compile, init),
                           zen and pool.submit(fast_compile, zen))
                   for space, (network, init, zen) in lowered.items()}
        return {space: (network, init.result(), zen and zen.result())
                for space, (network, init, zen) in futures.items()}


def _zen_draws(network, params, key):
    return zen_zico.zen_draws(_inputs(network, params, key))


@pytest.fixture(scope="module")
def initialised(programs):
    """{space: (network, [params for each of NUM_KEYS keys])}."""
    out = {}
    for space, (network, init, _) in programs.items():
        images = jnp.zeros((1, network.image_size, network.image_size, 3), jnp.float32)
        # As NumPy arrays: indexing device arrays layer by layer dispatches an op each.
        out[space] = network, [
            jax.tree.map(np.asarray, init(jax.random.key(100 + k), images)["params"])
            for k in range(NUM_KEYS)]
    return out


# ---------------------------------------------------------------------------------------
# What every parameter is, from the layer table and the params tree
# ---------------------------------------------------------------------------------------
def classify(network, params):
    """{(kind, torch weight shape): [values]} for every parameter array of ``params``.

    kind is "conv_weight", "linear_weight", "linear_bias", "conv_bias", "bn_weight" or
    "bn_bias"; the torch weight shape ((out, in, kh, kw) or (out, in)) of the layer the
    parameter belongs to (the channels for BatchNorm). Every leaf must be accounted for,
    and every element of every kernel must belong to exactly one table layer.
    """
    groups = defaultdict(list)
    kernel_layers = defaultdict(list)  # param_path -> layers
    for layer in network.layers:
        kernel_layers[layer.param_path].append(layer)
    weights = layer_weights(network, params)
    for layer, weight in zip(network.layers, weights):
        assert weight.shape == layer.shape, layer.name
        groups[layer.kind + "_weight", _torch_shape(layer)].append(np.asarray(weight).ravel())

    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = tuple(entry.key for entry in path)
        siblings = get_path(params, keys[:-1])
        if keys[-1] == "kernel":
            layers = kernel_layers[keys]
            assert layers, f"kernel {keys} is in no layer of the table"
            covered = np.zeros(leaf.shape, np.int32)
            for layer in layers:
                covered[layer.param_index] += 1
            assert np.all(covered == 1), f"kernel {keys}: elements in {set(covered.flat)} layers"
        elif keys[-1] == "bias" and "kernel" in siblings:
            (layer,) = kernel_layers[keys[:-1] + ("kernel",)]
            assert leaf.shape == layer.shape[-1:], keys
            groups[layer.kind + "_bias", _torch_shape(layer)].append(np.asarray(leaf).ravel())
        elif keys[-1] in ("scale", "bias") and set(siblings) == {"scale", "bias"}:
            kind = "bn_weight" if keys[-1] == "scale" else "bn_bias"
            groups[kind, leaf.shape[-1:]].append(np.asarray(leaf).ravel())
        else:
            raise AssertionError(f"parameter {keys} is of no known kind: add it to this test")
    return {key: np.concatenate(values) for key, values in groups.items()}


def _torch_shape(layer):
    if layer.kind == "conv":
        kh, kw, c_in, c_out = layer.shape
        return (c_out, c_in, kh, kw)
    c_in, c_out = layer.shape
    return (c_out, c_in)


def _torch_module(kind, shape):
    """The torch module whose parameter of ``kind`` has the weight shape ``shape``.

    A depthwise conv (DARTS' separable and dilated convs, groups = channels) has the
    weight shape (C, 1, k, k) of a 1-input conv, and torch's init reads only the
    weight's shape, so Conv2d(1, C, k) draws the same distribution.
    """
    if kind.startswith("conv"):
        c_out, c_in, kh, kw = shape
        return torch.nn.Conv2d(c_in, c_out, (kh, kw), bias=kind == "conv_bias")
    if kind.startswith("linear"):
        c_out, c_in = shape
        return torch.nn.Linear(c_in, c_out)
    return torch.nn.BatchNorm2d(shape[0])


def torch_draws(kind, shape, count, *, seed):
    """``count`` values of the ``kind`` parameter of fresh torch modules of ``shape``:
    ``reset_parameters()`` repeated under a seeded generator."""
    torch.manual_seed(seed)
    module = _torch_module(kind, shape)
    tensor = {"weight": module.weight, "bias": module.bias}[kind.rsplit("_", 1)[1]]
    values, total = [], 0
    while total < count:
        module.reset_parameters()
        values.append(tensor.detach().numpy().ravel().copy())
        total += values[-1].size
    return np.concatenate(values)[:count]


@pytest.fixture(scope="module")
def samples(initialised):
    """{space: {(kind, shape): values over every init key, the first CAP}}."""
    out = {}
    for space, (network, all_params) in initialised.items():
        pooled = defaultdict(list)
        for params in all_params:
            for key, values in classify(network, params).items():
                pooled[key].append(values)
        out[space] = {key: np.concatenate(values)[:CAP] for key, values in pooled.items()}
    return out


def mixture(samples, kind, *, seed, ratio=TORCH_RATIO, scale=1.0):
    """zcjax's values of ``kind`` pooled over shapes, and torch's for the same mixture of
    shapes (``ratio`` torch values per zcjax value, times ``scale``)."""
    ours, theirs = [], []
    for index, ((k, shape), values) in enumerate(sorted(samples.items())):
        if k == kind:
            ours.append(values)
            theirs.append(scale * torch_draws(k, shape, ratio * values.size, seed=seed + index))
    return np.concatenate(ours), np.concatenate(theirs)


# ---------------------------------------------------------------------------------------
# Conv / Linear kernels and Linear biases: PyTorch's default uniform draws
# ---------------------------------------------------------------------------------------
UNIFORM_KINDS = ("conv_weight", "linear_weight", "linear_bias")


@pytest.mark.parametrize("space", SPACES)
def test_uniform_parameters_follow_torch_reset_parameters(samples, space, capsys):
    samples = samples[space]
    kinds = {kind for kind, _ in samples}
    assert {"conv_weight", "linear_weight", "linear_bias"} <= kinds, kinds
    assert "conv_bias" not in kinds  # every conv of these spaces is bias-free, as torch's
    lines = []
    # Pooled over every layer of a kind (torch's draws mix the same shapes in the same
    # proportions): this has the power to see a bound off by 10 %.
    for kind in UNIFORM_KINDS:
        ours, theirs = mixture(samples, kind, seed=1)
        result = scipy.stats.ks_2samp(ours, theirs)
        lines.append(f"{space} {kind} pooled: n={ours.size} D={result.statistic:.4f} "
                     f"p={result.pvalue:.3g}")
        assert result.pvalue > ACCEPT, lines[-1]
        # The same test rejects torch's own draws with the bound times 1.1, and a normal of
        # torch's variance (per shape), at this sample size.
        _, wider = mixture(samples, kind, seed=2, scale=1.1)
        wrong = scipy.stats.ks_2samp(ours, wider)
        lines.append(f"  bound x 1.1: D={wrong.statistic:.4f} p={wrong.pvalue:.3g}")
        assert wrong.pvalue < REJECT, lines[-1]
        normal = _normal_of_same_variance(samples, kind, seed=3)
        wrong = scipy.stats.ks_2samp(ours, normal)
        lines.append(f"  normal, same variance: D={wrong.statistic:.4f} p={wrong.pvalue:.3g}")
        assert wrong.pvalue < REJECT, lines[-1]
    # Each shape on its own (less power, but a single mis-scaled layer type cannot hide in
    # the pool); Bonferroni over the shapes.
    shapes = [(kind, shape) for kind, shape in sorted(samples) if kind in UNIFORM_KINDS]
    for index, (kind, shape) in enumerate(shapes):
        ours = samples[kind, shape]
        theirs = torch_draws(kind, shape, max(TORCH_RATIO * ours.size, 2000), seed=10 + index)
        result = scipy.stats.ks_2samp(ours, theirs)
        lines.append(f"{space} {kind} {shape}: n={ours.size} D={result.statistic:.4f} "
                     f"p={result.pvalue:.3g}")
        assert result.pvalue > ACCEPT / len(shapes), lines[-1]
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def _normal_of_same_variance(samples, kind, *, seed):
    """Per shape, a normal with the variance of torch's own draws for that shape."""
    rng = np.random.default_rng(seed)
    out = []
    for index, ((k, shape), values) in enumerate(sorted(samples.items())):
        if k == kind:
            std = torch_draws(k, shape, 10_000, seed=1000 + index).std()
            out.append(rng.normal(0.0, std, TORCH_RATIO * values.size))
    return np.concatenate(out)


def test_torch_default_is_the_documented_uniform():
    """What the README says torch does, checked on torch: kaiming_uniform(a=sqrt(5)) is
    U(+-1/sqrt(fan_in)) for Conv2d/Linear weights, and the bias is U(+-1/sqrt(fan_in))."""
    for kind, shape, fan_in in [("conv_weight", (8, 4, 3, 3), 36),
                                ("conv_weight", (8, 1, 5, 5), 25),  # a depthwise 5x5
                                ("linear_weight", (10, 64), 64), ("linear_bias", (10, 64), 64)]:
        draws = torch_draws(kind, shape, 50_000, seed=7)
        bound = 1.0 / math.sqrt(fan_in)
        assert np.abs(draws).max() <= bound
        result = scipy.stats.kstest(draws, scipy.stats.uniform(-bound, 2 * bound).cdf)
        assert result.pvalue > ACCEPT, (kind, shape, result)
        wrong = scipy.stats.kstest(draws, scipy.stats.uniform(-1.1 * bound, 2.2 * bound).cdf)
        assert wrong.pvalue < REJECT, (kind, shape, wrong)
    # A depthwise conv's init depends only on its weight's shape (C, 1, k, k): torch's own
    # grouped Conv2d draws what the 1-input Conv2d of _torch_module draws.
    torch.manual_seed(8)
    grouped = torch.nn.Conv2d(8, 8, 5, groups=8, bias=False)
    draws = []
    for _ in range(250):
        grouped.reset_parameters()
        draws.append(grouped.weight.detach().numpy().ravel().copy())
    result = scipy.stats.ks_2samp(np.concatenate(draws),
                                  torch_draws("conv_weight", (8, 1, 5, 5), 50_000, seed=9))
    assert result.pvalue > ACCEPT, result


# ---------------------------------------------------------------------------------------
# BatchNorm: scale 1, bias 0
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES)
def test_batch_norm_parameters_are_torch_reset_parameters(samples, space):
    """Deterministic: every BatchNorm's scale and bias equal a torch BatchNorm2d's of the
    same width after ``reset_parameters()``."""
    samples = samples[space]
    for kind in ("bn_weight", "bn_bias"):
        shapes = [shape for k, shape in samples if k == kind]
        assert shapes, f"{space} has no {kind}"
        for shape in shapes:
            reference = torch_draws(kind, shape, shape[0], seed=0)
            values = samples[kind, shape]
            rows = values[:values.size - values.size % shape[0]].reshape(-1, shape[0])
            np.testing.assert_array_equal(rows, np.broadcast_to(reference, rows.shape))
    assert set(np.unique(np.concatenate([samples[key] for key in samples
                                         if key[0] == "bn_weight"]))) == {1.0}


# ---------------------------------------------------------------------------------------
# N(0, 1): zen's Gaussian re-initialisation and the Gaussian inputs
# ---------------------------------------------------------------------------------------
def check_standard_normal(values, seed, label):
    """values against torch.randn's own draws (and N(0, 1) itself), with the two wrong
    alternatives rejected at the same size; returns the report line."""
    values = np.asarray(values, np.float64).ravel()[:NORMAL_CAP]
    torch.manual_seed(seed)
    theirs = torch.randn(TORCH_RATIO * values.size).double().numpy()
    result = scipy.stats.ks_2samp(values, theirs)
    exact = scipy.stats.kstest(values, "norm")
    torch_exact = scipy.stats.kstest(theirs, "norm")
    wider = scipy.stats.ks_2samp(values, 1.1 * theirs)
    rng = np.random.default_rng(seed)
    uniform = scipy.stats.ks_2samp(values, rng.uniform(-math.sqrt(3), math.sqrt(3), theirs.size))
    line = (f"{label}: n={values.size} vs torch D={result.statistic:.4f} p={result.pvalue:.3g};"
            f" vs N(0,1) p={exact.pvalue:.3g} (torch's own p={torch_exact.pvalue:.3g});"
            f" std x 1.1 p={wider.pvalue:.3g}; unit-variance uniform p={uniform.pvalue:.3g}")
    assert result.pvalue > ACCEPT and exact.pvalue > ACCEPT, line
    assert torch_exact.pvalue > ACCEPT, line
    assert wider.pvalue < REJECT and uniform.pvalue < REJECT, line
    return line


def test_zen_reinitialisation_is_torch_normal(programs, initialised, capsys):
    """zen re-draws every kernel from N(0, 1) (the reference: ``nn.init.normal_``), sets BN
    scale 1 and every bias 0 (``ones_`` / ``zeros_``), and draws its x and noise batches
    from N(0, 1) (``torch.randn``)."""
    space = ZEN_SPACE
    network, _, zen = programs[space]
    params = initialised[space][1][0]
    kernels = []
    for k in range(ZEN_KEYS):
        variables, x, noise = zen(params, jax.random.key(50 + k))
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]:
            name = path[-1].key
            if name == "kernel":
                kernels.append(np.asarray(leaf).ravel())
            elif name == "scale":
                assert np.all(np.asarray(leaf) == 1), path
            else:
                assert name == "bias" and np.all(np.asarray(leaf) == 0), path
    # Every kernel the layer table knows is re-drawn (none keeps its uniform init).
    assert len(kernels) == ZEN_KEYS * len({layer.param_path for layer in network.layers})
    lines = [check_standard_normal(np.concatenate(kernels), 20, f"{space} zen kernels")]
    lines.append(check_standard_normal(x, 21, "zen x"))
    lines.append(check_standard_normal(noise, 22, "zen noise"))
    assert not np.array_equal(np.asarray(x), np.asarray(noise))
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_gaussian_inputs_are_standard_normal(initialised, capsys):
    images, _ = synthetic_batch(64, image_size=32, key=jax.random.key(8))
    lines = [check_standard_normal(images, 30, "synthetic_batch")]
    network, all_params = initialised["nb201"]
    inputs = _inputs(network, all_params[0], jax.random.key(9),
                     validate_options(["ntk"], {"tenas_inputs": "gaussian"}))
    tenas = passes.tenas_images(inputs)
    assert tenas.shape == inputs.images.shape
    lines.append(check_standard_normal(tenas, 31, "tenas_images (gaussian)"))
    with capsys.disabled():
        print("\n" + "\n".join(lines))


# ---------------------------------------------------------------------------------------
# How the weights are drawn: one random call, or Flax's per array (zcjax.initialisation)
# ---------------------------------------------------------------------------------------
def count_primitives(jaxpr, name: str) -> int:
    """Equations of primitive ``name`` in ``jaxpr`` and the jaxprs nested in it."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == name
        for value in eqn.params.values():
            for inner in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(inner, jax.extend.core.ClosedJaxpr):
                    count += count_primitives(inner.jaxpr, name)
                elif isinstance(inner, jax.extend.core.Jaxpr):
                    count += count_primitives(inner, name)
    return count


@pytest.mark.parametrize("space", SPACES)
def test_one_draw_is_one_random_call_per_array_one_per_parameter(space):
    network = _networks()[space]
    key = jax.random.key(0)
    kernels = sum(1 for path, _ in jax.tree_util.tree_flatten_with_path(
        jax.eval_shape(network.init, key))[0] if path[-1].key == "kernel")
    draws = {draw: count_primitives(jax.make_jaxpr(
        functools.partial(network.init, init_draw=draw))(key).jaxpr, "random_bits")
             for draw in ("one", "per_array")}
    # Per array: a draw per kernel and Linear bias (BatchNorm's are constants).
    assert draws == {"one": 1, "per_array": kernels + 1}
    with pytest.raises(ValueError, match="init_draw must be one of 'one', 'per_array'"):
        network.init(key, init_draw="flax")


BENCH_STORE = Path(__file__).resolve().parents[1] / "bench" / "search" / "cifar10" / "scores"


def test_per_array_reproduces_a_store_scored_before_init_draw_existed(tmp_path):
    """bench/search/cifar10/scores was written by ``zcjax score-space nb201 --proxies
    naswot --data cifar10`` before init_draw existed: with ``init_draw="per_array"`` its
    rows are today's identity, and rescoring one reproduces its value."""
    from zcjax import bulk, data, store

    part = sorted(BENCH_STORE.glob("*.parquet"))[0]
    rows = pd.read_parquet(part)
    assert "init_draw" not in rows.settings.iloc[0]  # the store predates init_draw
    (tmp_path / "old").mkdir()
    shutil.copy(part, tmp_path / "old")
    batch = data.sample_batch("cifar10", 64, key=jax.random.key(0))
    options = dict(key=0, dataset="cifar10", batch_id="cifar10-batch64-seed0", progress=False)
    archs = sorted(rows.arch)
    resumed = bulk.score_space("nb201", "naswot", batch, out=tmp_path / "old", archs=archs,
                               init_draw="per_array", **options)
    assert (resumed.rows_written, resumed.rows_skipped) == (0, len(archs))
    # A finite, non-zero score of a network with convolutions (an all-skip cell has none).
    stored = rows[(rows.value > 0) & rows.arch.str.contains("conv_3x3")].iloc[0]
    bulk.score_space("nb201", "naswot", batch, out=tmp_path / "new", archs=[stored.arch],
                     init_draw="per_array", **options)
    rescored = store.read_results(tmp_path / "new").value.iloc[0]
    # Another seed's weights move naswot by far more than 1e-6 relative.
    assert rescored == pytest.approx(stored.value, rel=1e-6)
    other = bulk.score_space("nb201", "naswot", batch, out=tmp_path / "one", archs=[stored.arch],
                             **options)
    assert other.rows_written == 1  # the one draw: another identity, other weights
    assert store.read_results(tmp_path / "one").value.iloc[0] != pytest.approx(stored.value,
                                                                               rel=1e-6)
