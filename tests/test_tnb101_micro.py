"""TransNAS-Bench-101 micro against outside sources: NASLib's keys and the benchmark's arch
names, the error messages, parameter counts and FLOPs against NASLib's stored ones and by
hand, and the layer table's BatchNorm accounting. What every space must satisfy is in
test_space_conformance.py."""

import gzip
import itertools
import json

import jax
import numpy as np
import pytest

from conftest import shared_file
from test_space_conformance import FIXTURES
from zcjax.spaces import tnb101_micro as tnb

ARCHS = FIXTURES["tnb101_micro"].archs


@pytest.fixture(scope="module")
def naslib():
    return json.load(gzip.open(shared_file(
        "tnb101", "naslib_zc_transbench101_micro.e5a821c2.json.gz")))


# ---------------------------------------------------------------------------- codec


def test_naslib_keys_and_benchmark_names(naslib):
    keys = list(naslib["class_object"])
    assert len(keys) == 711
    for key in keys:
        genotype = tnb.from_naslib(key)
        assert tnb.to_naslib(genotype) == key
        np.testing.assert_array_equal(tnb.from_tnb101(tnb.to_tnb101(genotype)), genotype)
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


@pytest.mark.parametrize("fields,message", [
    ({"base_channels": 3}, "even"), ({"macro": "415"}, "layer types 1-4"),
    ({"cells_per_layer": 0}, ">= 1"),
])
def test_bad_config(fields, message):
    with pytest.raises(ValueError, match=message):
        tnb.Config(**fields)


def test_sample_is_uniform():
    a = tnb.sample(jax.random.key(0), 400)
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


def test_traced_counts_do_not_overflow_without_x64():
    genotypes = np.concatenate([tnb.sample(jax.random.key(3), 8), np.full((1, 6), 3, np.int32)])
    for count in (tnb.param_count, tnb.flops):
        exact = [count(g) for g in genotypes]
        # Without x64, float32 rather than an int32 that overflows (8.5e9 FLOPs).
        np.testing.assert_allclose(jax.jit(jax.vmap(count))(genotypes), exact, rtol=1e-6)
    assert tnb.flops(genotypes[-1]) > 2 ** 31


def test_layer_table_and_active_mask_add_up_to_the_param_count():
    network = tnb.network()
    names = [layer.name for layer in network.layers]
    # stems, 3 reduction cells (6 edges x 2 convs + 3 x 2 FR convs), 7 normal cells, head.
    assert len(names) == 2 + 3 * (12 + 6) + 7 * 12 + 1
    assert names[0] == "stem_0/conv" and names[-1] == "classifier"
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
