"""The search-space contract (zcjax.space): every registered space passes these checks.

Each test runs once per name in ``zcjax.space_names()``; a space needs only its entry in
:data:`FIXTURES` (a small config, a batch, architectures covering its ops) and no test
code of its own. Checks against outside sources (a benchmark's parameter counts, NASLib's
keys, hand-computed counts) stay in ``test_<space>.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zcjax
from conftest import ARCHS, random_variables
from zcjax import space as space_registry
from zcjax.network import (BLOCKS, block_inputs, block_outputs, block_vjp, get_path,
                           layer_outputs, layer_weights, sown_values)
from zcjax.proxies.base import cross_entropy
from zcjax.space import CAPABILITIES, SearchSpace


# The later proxies that read no fixed image size (meco's 64x64 Gaussian and swap's
# sample count have their own every-space tests: tests/test_meco.py, tests/test_swap.py).
SOTA_PROXIES = ("az_expressivity", "az_progressivity", "az_trainability", "vkdnw", "vkdnw_dim")


@dataclasses.dataclass(frozen=True)
class Fixture:
    """One space's test data.

    Attributes:
      config: ``Config`` field overrides of a small network (compiles in seconds).
      archs: canonical arch strings that between them use every op; the first is
        connected (every active layer reaches the output, so gets a gradient). For a
        space with shape signatures, all of one signature (one compilation serves them).
      batch: the conftest fixture of the batch: ``"batch"`` (16 CIFAR-10 images, 32x32)
        or ``"tiny_batch"`` (8 ImageNet16 images, 16x16, 10 classes).
      scoring: overrides of ``config`` for the make_scorer check (a smaller network:
        a scorer compiles every proxy).
    """

    config: dict[str, Any]
    archs: tuple[str, ...]
    batch: str = "batch"
    scoring: dict[str, Any] = dataclasses.field(default_factory=dict)


FIXTURES = {
    "nb201": Fixture(
        config=dict(channels=(4, 8, 16), cells_per_stage=2),
        archs=ARCHS,  # every op, degenerate cells included
        scoring=dict(channels=(2, 4, 8), cells_per_stage=1, image_size=16),
    ),
    "nb101": Fixture(
        # Two stacks of two cells: stack 0 scans its cells, stack 1 runs its first alone.
        config=dict(stem_channels=8, stacks=2, cells_per_stack=2, image_size=16),
        # One signature (three vertices feed the output); between them every op,
        # projections present and absent, an input -> output edge, truncating edges.
        archs=(
            "(0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0,"
            " 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 3, 4, 4, 1)",
            "(0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1,"
            " 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 4, 2, 3, 4, 2, 1)",
            "(0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0,"
            " 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 3, 2, 2, 2, 1)",
        ),
        batch="tiny_batch",
        scoring=dict(stem_channels=4, cells_per_stack=1),
    ),
    "tnb101_micro": Fixture(
        # 32x32 inputs: the stem divides by 4, the "414" layers by 2 twice more.
        config=dict(base_channels=4, macro="414", cells_per_layer=2, num_classes=10,
                    image_size=32),
        archs=(
            "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|skip_connect~2|",
            "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
            "skip_connect~2|",
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "nor_conv_3x3~2|",
            "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|none~0|nor_conv_3x3~1|nor_conv_1x1~2|",
            "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        ),
        scoring=dict(macro="41", cells_per_layer=1, image_size=16),
    ),
    "darts": Fixture(
        # Three cells: normal, reduce, reduce after reduce (FactorizedReduce preprocessing).
        config=dict(channels=4, layers=3, num_classes=10, image_size=16),
        # Every op in both cells; reduce-cell skips from a cell input and from a node.
        archs=(
            "[[(0, 3), (1, 4), (0, 5), (2, 6), (1, 0), (3, 1), (4, 2), (0, 3)], "
            "[(0, 2), (1, 3), (2, 2), (1, 4), (0, 5), (3, 6), (4, 0), (1, 1)]]",
            "[[(1, 0), (0, 1), (2, 2), (1, 3), (3, 4), (0, 5), (2, 6), (4, 0)], "
            "[(1, 4), (0, 0), (1, 1), (2, 3), (3, 2), (1, 6), (0, 5), (4, 2)]]",
            "[[(0, 2), (1, 2), (0, 2), (2, 2), (3, 2), (1, 2), (4, 2), (2, 2)], "
            "[(0, 1), (1, 2), (2, 0), (0, 2), (1, 2), (3, 3), (4, 1), (2, 2)]]",
        ),
        batch="tiny_batch",
        # Two reduce cells: a third of the compile time of three.
        scoring=dict(layers=2),
    ),
}


@dataclasses.dataclass(frozen=True)
class Case:
    """A space with its fixture, config and genotypes."""

    space: SearchSpace
    fixture: Fixture
    config: Any
    genotypes: np.ndarray  # the fixture's archs

    def network(self, reference: bool = False, config=None):
        """The space's network of the fixture's archs (their signature, if it has them)."""
        config = self.config if config is None else config
        build = self.space.reference_network if reference else self.space.network
        if self.space.offers("signature"):
            return build(config, self.space.signature(self.genotypes[0], config))
        return build(config)


@pytest.fixture(scope="module", params=zcjax.space_names())
def case(request) -> Case:
    name = request.param
    if name not in FIXTURES:
        pytest.fail(f"space {name!r} is registered but has no entry in FIXTURES "
                    "(tests/test_space_conformance.py)")
    space, fixture = zcjax.get_space(name), FIXTURES[name]
    config = space.Config(**fixture.config)
    genotypes = np.stack([space.encode(arch) for arch in fixture.archs])
    if space.offers("signature"):  # the fixture's promise: one network serves its archs
        assert len({space.signature(g, config) for g in genotypes}) == 1, name
    return Case(space, fixture, config, genotypes)


@pytest.fixture(scope="module")
def case_batch(case, request):
    return request.getfixturevalue(case.fixture.batch)


# ------------------------------------------------------------------ the declaration


def test_the_registry_returns_the_declared_space(case):
    space = case.space
    assert case.network().space == case.network(reference=True).space == space.name
    assert zcjax.get_space(space.name) is space and zcjax.get_space(space) is space
    config = space.Config()
    assert config.num_classes >= 2 and config.image_size >= 1
    assert space.num_archs is None or space.num_archs >= len(case.genotypes)


def test_capabilities_are_declared_not_probed(case):
    space = case.space
    for capability in CAPABILITIES:
        declared = getattr(space, capability)
        assert space.offers(capability) == (declared is not None)
        if declared is None:
            with pytest.raises(ValueError, match=f"space '{space.name}' does not offer "
                                                 f"{capability}"):
                space.require(capability)
        else:
            assert space.require(capability) is declared
    with pytest.raises(ValueError, match="unknown space capability 'fly'"):
        space.offers("fly")


# ------------------------------------------------------------------------- codec


def test_codec_round_trips_sampled_genotypes(case):
    space = case.space
    genotypes = space.sample(jax.random.key(0), 32)
    chex.assert_shape(genotypes, (32,) + case.genotypes.shape[1:])
    assert genotypes.dtype == np.int32
    np.testing.assert_array_equal(genotypes, space.sample(jax.random.key(0), 32))
    assert not np.array_equal(genotypes, space.sample(jax.random.key(1), 32))
    assert len({g.tobytes() for g in genotypes}) == 32  # replace=False
    strings = space.arch_strings(genotypes)
    assert strings == [space.decode(g) for g in genotypes]
    for genotype, arch in zip(genotypes, strings):
        for form in (arch, genotype, genotype.tolist()):
            np.testing.assert_array_equal(space.check_arch(form), genotype)
        np.testing.assert_array_equal(space.encode(arch), genotype)
        assert space.decode(space.encode(arch)) == arch
    for arch, genotype in zip(case.fixture.archs, case.genotypes):
        assert space.decode(genotype) == arch  # the fixture's strings are canonical


def malformed(genotype: np.ndarray):
    """Inputs no space accepts: (description, value)."""
    return [("a string that is no arch", "not an architecture"),
            ("a number", 3.5),
            ("one integer too many", np.append(genotype.ravel(), 0)),
            ("floats", genotype.astype(np.float64)),
            ("out-of-range integers", genotype + 100)]


def test_check_arch_raises_one_clear_value_error(case):
    space = case.space
    for what, value in malformed(case.genotypes[0]):
        with pytest.raises(ValueError) as error:
            space.check_arch(value)
        assert str(error.value), what
        with pytest.raises(ValueError):
            space.encode(value) if isinstance(value, str) else space.decode(value)


# ------------------------------------------------ compiled network vs reference


@pytest.fixture(scope="module")
def runs(case, case_batch):
    """The compiled network's jitted loss, gradients, layer outputs and ReLU counts for
    every fixture arch (counting traces), and the reference network's, run eagerly.

    In float64, where the two agree to ~1e-12: in float32 the rounding noise of batch
    statistics would set the tolerance, not the networks.
    """
    compiled, reference = case.network(), case.network(reference=True)
    images, labels = case_batch
    traces = []

    def loss_and_grads(network, params, genotype):
        def loss(params):
            logits, taps = network.apply({"params": params}, genotype, images, capture=True)
            # How many ReLU modules and ReLU-named wrappers read a tapped tensor (naswot).
            relus = sum(jnp.stack([jnp.sum(modules), jnp.sum(wrappers)])
                        for _, modules, wrappers in sown_values(taps["relu"]))
            return cross_entropy(logits, labels), (
                layer_outputs(network, taps["intermediates"]), relus)

        (value, (outputs, relus)), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, grads, outputs, relus

    def step(variables, genotype):
        traces.append(1)  # a Python side effect: runs once per trace
        return loss_and_grads(compiled, variables["params"], genotype)

    step = jax.jit(step)
    with jax.enable_x64(True):
        images = images.astype(jnp.float64)
        variables = jax.tree.map(lambda value: value.astype(jnp.float64),
                                 random_variables(compiled, jax.random.key(7)))
        got = [jax.device_get(step(variables, g)) for g in case.genotypes]
        want = [jax.device_get(loss_and_grads(reference, variables["params"], g))
                for g in case.genotypes]
    return types.SimpleNamespace(compiled=compiled, variables=variables, got=got, want=want,
                                 traces=traces, step=step)


def _largest(tree) -> float:
    """The largest magnitude in a tree of arrays (1 if all are zero)."""
    return max(float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(tree)) or 1.0


def test_compiled_equals_reference_in_loss_gradients_layer_outputs_and_relus(case, runs):
    for arch, (loss, grads, outputs, relus), (ref_loss, ref_grads, ref_outputs, ref_relus) in (
            zip(case.fixture.archs, runs.got, runs.want)):
        chex.assert_trees_all_close(loss, ref_loss, rtol=1e-9)
        np.testing.assert_array_equal(relus, ref_relus)
        chex.assert_trees_all_equal_shapes(grads, ref_grads)
        # atol at the tree's scale: some gradients are zero in exact arithmetic (a
        # BatchNorm's bias feeding only linear ops and another BatchNorm), here noise.
        chex.assert_trees_all_close(grads, ref_grads, rtol=1e-6, atol=1e-9 * _largest(ref_grads))
        chex.assert_trees_all_close(outputs, ref_outputs, rtol=1e-6,
                                    atol=1e-9 * _largest(ref_outputs))
        # What the reference never touches (its gradient is exactly zero throughout) the
        # compiled network must not touch either: exactly zero, not merely small.
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
            if not np.any(want):
                assert not np.any(got), arch


def test_one_compilation_serves_every_genotype(runs):
    assert len(runs.traces) == 1
    assert runs.step._cache_size() == 1


def test_unused_layers_get_exactly_zero_gradient(case, runs):
    compiled = runs.compiled
    for position, genotype in enumerate(case.genotypes):
        active = np.asarray(compiled.active(genotype))
        grads = runs.got[position][1]
        for layer, used, grad in zip(compiled.layers, active, layer_weights(compiled, grads)):
            if not used:
                assert not np.any(grad), (case.fixture.archs[position], layer.name)
            elif position == 0:  # connected: every active layer gets a gradient
                assert np.any(grad), layer.name


def test_layer_outputs_are_those_of_the_active_layers(case, runs):
    """Every active layer's tapped output has its channels and is not zero; an output
    that no active layer claims is zero (the table's output paths are the right ones)."""
    compiled = runs.compiled
    for position, genotype in enumerate(case.genotypes):
        active = np.asarray(compiled.active(genotype))
        outputs = runs.got[position][2]
        claimed = {}
        for layer, used, output in zip(compiled.layers, active, outputs):
            key = (layer.output_path, layer.output_index)
            claimed[key] = claimed.get(key, False) or bool(used)
            assert output.shape[-1] == layer.shape[-1], layer.name
            if used and position == 0:
                assert np.any(output), layer.name
        for layer, output in zip(compiled.layers, outputs):
            if not claimed[(layer.output_path, layer.output_index)]:
                assert not np.any(output), (case.fixture.archs[position], layer.name)


# ------------------------------------------------------------ the layer table


# ------------------------------------------------------------------ the blocks


def scoring_case(case, case_batch):
    """The fixture's scoring config (the smaller network) and the batch resized to it."""
    config = dataclasses.replace(case.config, **case.fixture.scoring)
    images, labels = case_batch
    images = jax.image.resize(images, (len(images), config.image_size, config.image_size, 3),
                              "bilinear")
    return config, (images, labels)


@pytest.fixture(scope="module")
def block_runs(case, case_batch):
    """On the scoring config (the smaller network), compiled (jitted) for the first two
    fixture archs and reference (eager) for the first, in float64: the blocks' sown inputs
    and outputs, the isolated pullback of random signs on every block's output, and of
    the signs on the middle block's output alone."""
    config, (images, _) = scoring_case(case, case_batch)

    def blocks_of(network, variables, genotype):
        _, taps = network.apply(variables, genotype, images, capture=True)
        outputs, pullback = block_vjp(network, variables, genotype, images)
        signs = [jax.random.rademacher(jax.random.fold_in(jax.random.key(3), k), out.shape,
                                       out.dtype) for k, out in enumerate(outputs)]
        middle = len(outputs) // 2
        alone = [s if k == middle else jnp.zeros_like(s) for k, s in enumerate(signs)]
        return (block_inputs(network, taps[BLOCKS]), block_outputs(network, taps[BLOCKS]),
                outputs, pullback(signs), pullback(alone))

    compiled = case.network(config=config)
    reference = case.network(reference=True, config=config)
    with jax.enable_x64(True):
        images = images.astype(jnp.float64)
        variables = jax.tree.map(lambda value: value.astype(jnp.float64),
                                 random_variables(compiled, jax.random.key(7)))
        step = jax.jit(functools.partial(blocks_of, compiled))
        got = [jax.device_get(step(variables, g)) for g in case.genotypes[:2]]
        want = [jax.device_get(blocks_of(reference, variables, case.genotypes[0]))]
    return types.SimpleNamespace(network=compiled, got=got, want=want)


def test_blocks_chain_from_the_stem_and_isolate(block_runs):
    network = block_runs.network
    assert network.blocks and network.blocks[0].input_path is None
    assert all(block.input_path is not None for block in network.blocks[1:])
    assert len({block.name for block in network.blocks}) == len(network.blocks)
    middle = len(network.blocks) // 2
    for inputs, outputs, isolated_outputs, grads, alone in block_runs.got:
        # Each block reads what the block before it wrote, isolation changes no value.
        for k in range(1, len(outputs)):
            np.testing.assert_array_equal(inputs[k], outputs[k - 1])
        chex.assert_trees_all_equal(isolated_outputs, outputs)
        # Isolated: the middle block's signs reach its own input and no other block's.
        assert grads[0] is None and alone[0] is None
        for k in range(1, len(outputs)):
            chex.assert_shape(grads[k], inputs[k].shape)
            if k == middle:
                np.testing.assert_array_equal(alone[k], grads[k])
            else:
                assert not np.any(alone[k]), network.blocks[k].name
    assert np.any(block_runs.got[0][4][middle])  # the first arch is connected


def test_compiled_blocks_equal_the_reference(block_runs):
    for got, want in zip(block_runs.got, block_runs.want):
        chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-9 * _largest(
            [leaf for leaf in jax.tree.leaves(want) if leaf is not None]))


def test_layer_table_aligns_with_the_parameters_and_the_active_mask(case):
    network = case.network()
    names = [layer.name for layer in network.layers]
    assert len(names) == len(set(names))
    params = jax.eval_shape(network.init, jax.random.key(0))["params"]
    for layer in network.layers:
        assert layer.kind in ("conv", "linear"), layer.name
        weight = get_path(params, layer.param_path)
        stacked = weight.shape[:len(layer.param_index)]
        assert all(0 <= i < n for i, n in zip(layer.param_index, stacked)), layer.name
        chex.assert_shape(weight, stacked + layer.shape)
    traced_active = jax.jit(network.active)
    for genotype in case.genotypes:
        active = np.asarray(network.active(genotype))
        chex.assert_shape(active, (len(network.layers),))
        assert active.dtype == bool and 0 < active.sum() < len(active)
        np.testing.assert_array_equal(traced_active(genotype), active)


def test_traced_counts_equal_the_concrete_ones(case):
    space, network = case.space, case.network()
    genotypes = case.genotypes
    if not space.offers("signature"):  # any genotype runs on the one network
        genotypes = np.concatenate([genotypes, space.sample(jax.random.key(3), 8)])
    with jax.enable_x64(True):  # the scorer's scope: exact
        for count, concrete in ((network.param_count, space.param_count),
                                (network.flops, space.flops)):
            expected = [concrete(g, case.config) for g in genotypes]
            assert [count(g) for g in genotypes] == expected
            assert all(isinstance(value, int) and value > 0 for value in expected)
            np.testing.assert_array_equal(jax.jit(jax.vmap(count))(genotypes), expected)
    for genotype, arch in zip(case.genotypes, case.fixture.archs):
        assert space.param_count(arch, case.config) == space.param_count(genotype, case.config)


def test_make_scorer_gives_finite_scores(case, case_batch):
    config, (images, labels) = scoring_case(case, case_batch)
    names = ("snip", "naswot") + SOTA_PROXIES
    # VKDNW's Fisher over 8 tensors, not 128: the same program on every space, compiled in
    # a fraction of the time (the default is held to the authors' code in tests/parity).
    scorer = zcjax.make_scorer(case.space.name, names, config=config, vkdnw_tensors=8)
    scores = scorer(case.genotypes[0], (images, labels % config.num_classes), jax.random.key(0))
    assert set(scores) == set(names)
    assert all(np.isfinite(value) for value in scores.values()), scores


# ----------------------------------------------------------- optional capabilities


def test_all_genotypes_are_every_architecture_once(case):
    space = case.space
    if not space.offers("all_genotypes"):
        pytest.skip(f"{space.name} does not enumerate its architectures")
    everything = space.all_genotypes()
    chex.assert_shape(everything, (space.num_archs,) + case.genotypes.shape[1:])
    assert everything.dtype == np.int32
    assert len({g.tobytes() for g in everything}) == space.num_archs
    strings = space.arch_strings(everything)
    assert len(set(strings)) == space.num_archs
    np.testing.assert_array_equal(np.stack([space.encode(arch) for arch in strings]),
                                  everything)


def test_naslib_keys_round_trip(case):
    space = case.space
    if not space.offers("from_naslib"):
        pytest.skip(f"{space.name} reads no NASLib keys")
    assert space.offers("to_naslib")
    for genotype in space.sample(jax.random.key(2), 16):
        key = space.to_naslib(genotype)
        assert isinstance(key, str)
        np.testing.assert_array_equal(space.from_naslib(key), genotype)
        assert zcjax.benchmarks.SUITE_ZERO_ARCH_KEYS[space.name](key) == space.decode(genotype)
    if space.naslib_name is not None:
        assert zcjax.benchmarks.suite_zero_space(f"zc_{space.naslib_name}.json") == space.name


def test_edge_ops_are_the_genotype_per_edge(case):
    space = case.space
    if not space.offers("edge_ops"):
        pytest.skip(f"{space.name} has no per-edge genotype")
    for genotype in case.genotypes:
        per_edge = space.edge_ops(genotype)
        assert [int(op) for op in per_edge] == genotype.ravel().tolist()
    # Every combination of ops on the edges is an architecture.
    edges = case.genotypes.shape[1]
    assert round(space.num_archs ** (1 / edges)) ** edges == space.num_archs


def test_mutations_are_valid_different_and_reproducible(case):
    space = case.space
    if not space.offers("mutate"):
        pytest.skip(f"{space.name} does not mutate")
    parents = space.sample(jax.random.key(3), 20)
    children = []
    rng = np.random.default_rng(0)
    for parent in parents:
        for _ in range(10):
            child = space.mutate(parent, rng)
            assert child.dtype == np.int32 and child.shape == parent.shape
            np.testing.assert_array_equal(space.check_arch(child), child)  # valid
            assert space.decode(child) != space.decode(parent)
            children.append(child)
    again = np.random.default_rng(0)
    np.testing.assert_array_equal(
        np.stack([space.mutate(p, again) for p in parents for _ in range(10)]),
        np.stack(children))
    # A mutation is a small change: most genotype entries stay as they were.
    changed = np.mean([np.mean(c != p) for c, p in zip(children, np.repeat(parents, 10, 0))])
    assert 0 < changed <= 0.2
    with pytest.raises(ValueError):
        space.mutate(np.full_like(parents[0], 99), rng)


# -------------------------------------------------------------------- registry


@pytest.fixture
def registry(monkeypatch):
    """The registry, restored after the test."""
    monkeypatch.setattr(space_registry, "_REGISTERED", dict(space_registry._REGISTERED))
    return space_registry


def test_a_user_space_registers_and_is_found_by_name(registry):
    nb201 = zcjax.get_space("nb201")
    mine = dataclasses.replace(nb201, name="my_nb201")
    assert zcjax.register_space(mine) is mine
    assert zcjax.get_space("my_nb201") is mine and "my_nb201" in zcjax.space_names()
    assert zcjax.register_space(mine) is mine  # the same space again: a no-op
    with pytest.raises(ValueError, match="'my_nb201' is already registered"):
        zcjax.register_space(dataclasses.replace(mine, num_archs=5))
    with pytest.raises(ValueError, match="'nb201' is already registered"):
        zcjax.register_space(dataclasses.replace(nb201))
    other = zcjax.register_space(dataclasses.replace(mine, num_archs=5), replace=True)
    assert zcjax.get_space("my_nb201") is other
    module = types.ModuleType("my_space")
    module.SPACE = dataclasses.replace(nb201, name="from_module")
    assert zcjax.register_space(module) is module.SPACE
    assert zcjax.make_scorer("from_module", ("params",)).space is module.SPACE


def test_bad_registrations_and_lookups_are_one_clear_error(registry):
    with pytest.raises(ValueError, match="unknown search space 'nb999'; valid spaces: nb201"):
        zcjax.get_space("nb999")
    with pytest.raises(TypeError, match="a name or a SearchSpace"):
        zcjax.get_space(3)
    with pytest.raises(TypeError, match="must end with SPACE = SearchSpace"):
        zcjax.register_space(types.ModuleType("empty"))
    with pytest.raises(TypeError, match="takes a SearchSpace or a module"):
        zcjax.register_space("nb201")
    nb201 = zcjax.get_space("nb201")

    @dataclasses.dataclass(frozen=True)
    class NoImageSize:
        num_classes: int = 10

    with pytest.raises(TypeError, match="lacks the field\\(s\\) image_size"):
        dataclasses.replace(nb201, Config=NoImageSize)
    with pytest.raises(TypeError, match="encode must be a function"):
        dataclasses.replace(nb201, encode=None)
    with pytest.raises(TypeError, match="capability mutate must be a function or None"):
        dataclasses.replace(nb201, mutate=3)
    with pytest.raises(TypeError, match="num_archs"):
        dataclasses.replace(nb201, num_archs=0)
