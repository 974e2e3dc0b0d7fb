"""TransNAS-Bench-101 micro: codecs (ours, NASLib's keys, the benchmark's names), parameter
counts against NASLib's stored ones, the compiled-once network against the
per-architecture module, the layer table / active mask, and scoring."""

import gzip
import itertools
import json

import jax
import numpy as np
import pytest

import zcjax
from conftest import loss_and_grads, random_variables, shared_file
from zcjax.network import get_path
from zcjax.spaces import tnb101_micro as tnb

# 32x32 inputs: the stem divides by 4, the "414" layers by 2 twice more (8 -> 4 -> 2).
SMALL = tnb.Config(base_channels=4, macro="414", cells_per_layer=2, num_classes=10,
                   image_size=32)
TINY = tnb.Config(base_channels=4, macro="41", cells_per_layer=1, num_classes=10, image_size=16)
ARCHS = (
    "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|skip_connect~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|none~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
)


@pytest.fixture(scope="module")
def naslib():
    return json.load(gzip.open(shared_file(
        "tnb101", "naslib_zc_transbench101_micro.e5a821c2.json.gz")))


# ---------------------------------------------------------------------------- codec


def test_codec_round_trips_all_4096():
    genotypes = tnb.all_genotypes()
    assert genotypes.shape == (4096, 6) and len({tuple(g) for g in genotypes}) == 4096
    assert tnb.NUM_ARCHS == 4096
    for genotype in genotypes:
        arch = tnb.decode(genotype)
        np.testing.assert_array_equal(tnb.encode(arch), genotype)
        np.testing.assert_array_equal(tnb.from_tnb101(tnb.to_tnb101(genotype)), genotype)
        np.testing.assert_array_equal(tnb.from_naslib(tnb.to_naslib(genotype)), genotype)


def test_naslib_keys_and_benchmark_names(naslib):
    keys = list(naslib["class_object"])
    assert len(keys) == 711
    for key in keys:
        genotype = tnb.from_naslib(key)
        assert tnb.to_naslib(genotype) == key
        for form in (key, tnb.decode(genotype), tnb.to_tnb101(genotype), genotype):
            np.testing.assert_array_equal(tnb.check_arch(form), genotype)
    # Digits are the benchmark's codes (0 Zero, 1 Identity, 2 1x1, 3 3x3) in its order.
    genotype = tnb.from_naslib("(1, 0, 3, 2, 1, 0)")
    assert tnb.decode(genotype) == \
        "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|nor_conv_1x1~0|skip_connect~1|none~2|"
    assert tnb.to_tnb101(genotype) == "64-41414-1_03_210"


@pytest.mark.parametrize("arch,message", [
    ("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'avg_pool_3x3'"),
    ("|none~0|+|none~0|none~1|", "3 '\\+'-separated nodes"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "input 0 is written '~1'"),
    ("(1, 0, 0, 2, 1)", "six comma-separated op codes"),
    ("(1, 0, 0, 2, 1, 4)", "op indices are 0..3"),
    ("(1, 0, 0, 2, 1, x)", "six comma-separated op codes"),
    ("64-41414-1_02_22", "malformed TransNAS-Bench-101 micro arch"),
    ("64-4141-1_02_221", "not a cell of the 64-41414 network"),
    ("64-41414-1_02_224", "op indices are 0..3"),
])
def test_malformed_archs_name_the_problem(arch, message):
    with pytest.raises(ValueError, match=message):
        tnb.check_arch(arch)


@pytest.mark.parametrize("genotype,message", [
    ([0, 1, 2], "shape \\(6,\\)"), ([0, 1, 2, 3, 4, 0], "op indices are 0..3"),
    ([0.0] * 6, "integers"), ([-1, 0, 0, 0, 0, 0], "op indices"),
])
def test_malformed_genotype(genotype, message):
    with pytest.raises(ValueError, match=message):
        tnb.decode(genotype)


@pytest.mark.parametrize("fields,message", [
    ({"base_channels": 3}, "even"), ({"macro": "415"}, "layer types 1-4"),
    ({"cells_per_layer": 0}, ">= 1"),
])
def test_bad_config(fields, message):
    with pytest.raises(ValueError, match=message):
        tnb.Config(**fields)


def test_sample_is_keyed_and_uniform():
    a = tnb.sample(jax.random.key(0), 400)
    np.testing.assert_array_equal(a, tnb.sample(jax.random.key(0), 400))
    assert len({tuple(g) for g in a}) == 400
    frequencies = np.stack([(a == op).mean(0) for op in range(4)])
    assert np.all(np.abs(frequencies - 0.25) < 0.08)


# ---------------------------------------------------------------- params and FLOPs


@pytest.mark.parametrize("task", ["class_object", "class_scene"])
def test_param_count_equals_naslib_for_every_arch(naslib, task):
    config = tnb.Config(num_classes=tnb.TASK_CLASSES[task])
    for key, record in naslib[task].items():
        assert tnb.param_count(key, config) == round(record["params"]["score"] * 1e6), key


def test_flops_differences_equal_naslib(naslib):
    """NASLib's counter also counts ReLU and BN elements, which cancel between two archs
    that differ only by a 1x1 <-> 3x3 conv on one edge; the conv FLOPs must match."""
    records = naslib["class_object"]
    pairs = 0
    for first, second in itertools.combinations(records, 2):
        a, b = tnb.from_naslib(first), tnb.from_naslib(second)
        differ = np.flatnonzero(a != b)
        if len(differ) == 1 and {a[differ[0]], b[differ[0]]} == {2, 3}:
            ours = tnb.flops(a) - tnb.flops(b)
            theirs = (records[first]["flops"]["score"] - records[second]["flops"]["score"]) * 1e6
            assert ours == pytest.approx(theirs, abs=2), (first, second)
            pairs += 1
    assert pairs > 30


def test_counts_by_hand_for_a_small_network():
    config = tnb.Config(base_channels=2, macro="41", cells_per_layer=2, num_classes=3,
                        image_size=16)
    arch = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_3x3~2|"
    # stem 16 -> 8 (3 -> 1 channels) -> 4 (1 -> 2); layer 0: 2 -> 4 channels at 2x2.
    stem = 8 * 8 * 1 * 3 * 9 + 4 * 4 * 2 * 1 * 9
    reduction = 4 * 4 * 2 * 9 + 4 * 4 * 2 + 4 * 4 * 2 + 4 * 4 * 4 * 9  # 3x3, FR, 1x1, 3x3
    normal = 4 * 4 * 4 * 9 + 4 * 4 * 4 + 4 * 4 * 4 * 9  # 3x3, 1x1, 3x3 (skips, none: 0)
    head = 4 * 3 + 3
    assert tnb.flops(arch, config) == stem + reduction + 3 * normal + head
    stem = (27 + 2) + (9 * 2 + 4)
    reduction = (9 * 2 * 4 + 8) + (2 * 4 + 8) + (2 * 4 + 8) + (9 * 4 * 4 + 8)
    normal = 2 * (9 * 4 * 4 + 8) + (4 * 4 + 8)
    assert tnb.param_count(arch, config) == stem + reduction + 3 * normal + head


def test_counts_trace_with_a_traced_genotype():
    genotypes = np.concatenate([tnb.sample(jax.random.key(3), 8), np.full((1, 6), 3, np.int32)])
    for count in (tnb.param_count, tnb.flops):
        exact = [count(g) for g in genotypes]
        with jax.enable_x64(True):  # the scorer's scope: exact
            np.testing.assert_array_equal(jax.jit(jax.vmap(count))(genotypes), exact)
        # Without x64, float32 rather than an int32 that overflows (8.5e9 FLOPs).
        np.testing.assert_allclose(jax.jit(jax.vmap(count))(genotypes), exact, rtol=1e-6)
    assert tnb.flops(genotypes[-1]) > 2 ** 31


# ------------------------------------------------- compiled network vs reference


@pytest.fixture(scope="module")
def small(batch):
    """The compiled network's jitted loss-and-gradients step, counting its traces."""
    compiled, reference = tnb.network(SMALL), tnb.reference_network(SMALL)
    traces = []

    def step(variables, genotype):
        traces.append(1)  # a Python side effect: runs once per trace
        return loss_and_grads(compiled, variables, genotype, *batch)

    return compiled, reference, random_variables(compiled, jax.random.key(7)), jax.jit(step), traces


def test_compiled_network_equals_the_per_architecture_module_and_traces_once(small, batch):
    compiled, reference, variables, step, traces = small
    images, labels = batch
    for arch in ARCHS:
        genotype = tnb.encode(arch)
        loss, grads = step(variables, genotype)
        ref_loss, ref_grads = loss_and_grads(reference, variables, genotype, images, labels)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    assert len(traces) == 1


def test_unused_ops_get_exactly_zero_gradient(small):
    compiled, _, variables, step, traces = small
    genotype = tnb.encode(ARCHS[0])  # 3x3, none, skip, 1x1, none, skip
    _, grads = step(variables, genotype)
    active = np.asarray(compiled.active(genotype))
    for layer, used in zip(compiled.layers, active):
        grad = np.asarray(get_path(grads, layer.param_path)[layer.param_index])
        assert np.any(grad != 0) if used else np.all(grad == 0), layer.name
    reduction = grads["layer0_reduction"]
    # Edge 2<-0 is none: its FactorizedReduce and conv BNs get nothing.
    for name in ("bn_factorized", "bn1x1", "bn3x3"):
        assert np.all(np.asarray(reduction["edge_2_0"][name]["scale"]) == 0)
    assert np.any(np.asarray(reduction["edge_1_0"]["bn3x3"]["scale"]) != 0)
    # All-skip: the reduction cells' input edges are FactorizedReduces.
    _, grads = step(variables, tnb.encode(ARCHS[1]))
    for edge in ("edge_1_0", "edge_2_0", "edge_3_0"):
        assert np.any(np.asarray(grads["layer2_reduction"][edge]["factorized_b"]["kernel"]) != 0)
        assert np.all(np.asarray(grads["layer2_reduction"][edge]["conv1x1"]["kernel"]) == 0)


def test_layer_table_and_active_mask():
    network = tnb.network()
    names = [layer.name for layer in network.layers]
    # stems, 3 reduction cells (6 edges x 2 convs + 3 x 2 FR convs), 7 normal cells, head.
    assert len(names) == len(set(names)) == 2 + 3 * (12 + 6) + 7 * 12 + 1
    assert names[0] == "stem_0/conv" and names[-1] == "classifier"
    params = jax.eval_shape(network.init, jax.random.key(0))["params"]
    shapes = [get_path(params, layer.param_path).shape[len(layer.param_index):]
              for layer in network.layers]
    assert shapes == [layer.shape for layer in network.layers]
    for arch in ARCHS:
        genotype = tnb.encode(arch)
        active = np.asarray(network.active(genotype))
        used = [layer for layer, on in zip(network.layers, active) if on]
        # One affine BN after every conv, but one per FactorizedReduce (over both halves).
        bn = {"factorized_a": 4, "factorized_b": 0}
        bn_params = sum(bn.get(layer.name.split("/")[-1], 2) * layer.shape[-1]
                        for layer in used if layer.kind == "conv")
        classifier_bias = 100
        assert sum(layer.size for layer in used) + bn_params + classifier_bias \
            == tnb.param_count(genotype), arch


def test_make_scorer_gives_finite_scores(tiny_batch):
    scorer = zcjax.make_scorer("tnb101_micro", ("snip", "synflow", "naswot"), config=TINY)
    out = scorer(tnb.encode(ARCHS[3]), tiny_batch, jax.random.key(0))
    assert set(out) == {"snip", "synflow", "naswot"}
    assert all(np.isfinite(value) for value in out.values()), out
    assert zcjax.get_space("tnb101_micro") is tnb
