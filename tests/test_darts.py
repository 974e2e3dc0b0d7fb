"""DARTS / NAS-Bench-301 against outside sources: NASLib's compact keys and DARTS'
Genotypes, the error messages, NASLib's sampler, parameter counts against NASLib's stored
ones, DARTS' own and by hand, and the layer table's BatchNorm accounting. What every space
must satisfy is in test_space_conformance.py."""

import collections
import dataclasses
import gzip
import json

import jax
import numpy as np
import pytest

from conftest import shared_file
from test_space_conformance import FIXTURES
from zcjax.spaces import darts

Genotype = collections.namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
# The DARTS paper's cell (DARTS' genotypes.py), as its namedtuple and as its repr.
DARTS_V2_TUPLE = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=range(2, 6))
DARTS_V2 = repr(DARTS_V2_TUPLE)
ARCHS = FIXTURES["darts"].archs


@pytest.fixture(scope="module")
def naslib():
    return json.load(gzip.open(shared_file("nb301", "naslib_zc_nasbench301_725.6639fd15.json.gz")))


# ---------------------------------------------------------------------------- codec


def test_naslib_keys_round_trip(naslib):
    keys = list(naslib["cifar10"])
    assert len(keys) == 725
    for key in keys:
        genotype = darts.encode(key)
        assert genotype.shape == (2, 8, 2) and genotype.dtype == np.int32
        assert darts.decode(genotype) == key
        np.testing.assert_array_equal(darts.from_darts(darts.to_darts(genotype)), genotype)
        np.testing.assert_array_equal(darts.check_arch(darts.to_darts(genotype)), genotype)


def test_darts_genotype_forms():
    genotype = darts.from_darts(DARTS_V2)
    assert darts.decode(genotype) == (
        "[[(0, 3), (1, 3), (0, 3), (1, 3), (1, 3), (0, 2), (0, 2), (2, 5)], "
        "[(0, 0), (1, 0), (2, 2), (1, 0), (0, 0), (2, 2), (2, 2), (1, 0)]]")
    assert "reduce_concat=range(2, 6)" in DARTS_V2
    np.testing.assert_array_equal(darts.check_arch(DARTS_V2_TUPLE), genotype)
    # A tuple-of-tuples compact (NASLib's immutable form) and a nested list parse too.
    np.testing.assert_array_equal(darts.encode(str(tuple(map(tuple, genotype.tolist())))),
                                  genotype)
    np.testing.assert_array_equal(darts.check_arch(genotype.tolist()), genotype)


@pytest.mark.parametrize("arch,message", [
    ("[[(0, 3)] * 8]", "not a Python literal"),
    ("[[(0, 3), (1, 3)]]", "expected \\[normal cell, reduce cell\\]"),
    ("[" + str([(0, 1)] * 7) + ", " + str([(0, 1)] * 8) + "]", "normal cell must be a list of 8"),
    ("[" + str([(0, 1)] * 8) + ", " + str([(0, 1)] * 7 + [(0, 1, 2)]) + "]",
     "reduce cell entry 7"),
    ("[" + str([(0, 1)] * 8) + ", " + str([(0, 7)] + [(0, 1)] * 7) + "]",
     "reduce cell, node 0 \\(slot 0\\): op 7 is out of range 0..6"),
    ("[" + str([(0, 1)] * 4 + [(4, 1)] + [(0, 1)] * 3) + ", " + str([(0, 1)] * 8) + "]",
     "normal cell, node 2 \\(slot 4\\): input 4 is out of range 0..3"),
    ("[" + str([(2, 1)] + [(0, 1)] * 7) + ", " + str([(0, 1)] * 8) + "]",
     "node 0 \\(slot 0\\): input 2 is out of range 0..1"),
    ("[" + str([(-1, 1)] + [(0, 1)] * 7) + ", " + str([(0, 1)] * 8) + "]", "input -1"),
    (DARTS_V2.replace("'sep_conv_3x3', 0", "'conv_3x3', 0", 1), "not an \\(op, input\\) pair"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3]"), "\\[2, 3, 4, 5\\]"),
    ("Genotype(normal=[])", "malformed DARTS Genotype"),
])
def test_malformed_archs_name_the_problem(arch, message):
    with pytest.raises(ValueError, match=message):
        darts.check_arch(arch)


def test_sample_draws_distinct_inputs_per_node_as_naslib():
    a = darts.sample(jax.random.key(0), 64)
    for genotype in a:
        assert np.all(genotype[:, 0::2, 0] != genotype[:, 1::2, 0])
    assert set(np.unique(a[..., 1])) == set(range(7))


# ---------------------------------------------------------------- params and FLOPs


def test_param_count_equals_naslib_for_every_arch(naslib):
    for key, record in naslib["cifar10"].items():
        assert darts.param_count(key, darts.NASLIB_ZERO_COST) == \
            round(record["params"]["score"] * 1e6), key


def test_param_count_equals_darts_for_its_published_cell():
    # DARTS' train.py prints "param size = 3.349342MB" for DARTS_V2 (36 channels, 20
    # cells, auxiliary head not counted).
    assert darts.param_count(DARTS_V2, darts.Config(channels=36, layers=20)) == 3_349_342


def test_counts_by_hand_for_two_reduce_cells():
    config = darts.Config(channels=2, layers=2, num_classes=3, image_size=8)
    arch = [[(0, 0), (1, 0)] + [(0, 0)] * 6,
            [(0, 3), (1, 0), (2, 2), (1, 2), (0, 6), (3, 1), (4, 4), (2, 5)]]
    stem = 8 * 8 * 6 * 27
    # Cell 0: C = 4, 8x8 -> 4x4 (16 pixels); cell 1: C = 8, 4x4 -> 2x2, c_{k-2} via FR.
    pre = 2 * 8 * 8 * 4 * 6 + (4 * 4 * 8 * 6 + 4 * 4 * 8 * 16)
    ops0 = (2 * 16 * (9 * 4 + 16) + 16 * 4 * 9 + 0 + 16 * 4 * 4 + 16 * (25 * 4 + 16)
            + 16 * 4 * 9 + 2 * 16 * (25 * 4 + 16) + 16 * (9 * 4 + 16))
    ops1 = (2 * 4 * (9 * 8 + 64) + 4 * 8 * 9 + 0 + 4 * 8 * 8 + 4 * (25 * 8 + 64)
            + 4 * 8 * 9 + 2 * 4 * (25 * 8 + 64) + 4 * (9 * 8 + 64))
    head = 32 * 3 + 3
    assert darts.flops(arch, config) == stem + pre + ops0 + ops1 + head
    stem = 3 * 6 * 9 + 12
    pre = 2 * (6 * 4 + 8) + (6 * 8 + 16) + (16 * 8 + 16)
    ops0 = (2 * (9 * 4 + 16) + 16) + 0 + 0 + (16 + 8) + (25 * 4 + 16 + 8) + 0 \
        + (2 * (25 * 4 + 16) + 16) + (9 * 4 + 16 + 8)
    ops1 = (2 * (9 * 8 + 64) + 32) + 0 + 0 + (64 + 16) + (25 * 8 + 64 + 16) + 0 \
        + (2 * (25 * 8 + 64) + 32) + (9 * 8 + 64 + 16)
    assert darts.param_count(arch, config) == stem + pre + ops0 + ops1 + head
    # The NASLib graph has no affine parameters in the cell ops.
    no_affine = dataclasses.replace(config, affine=False)
    assert darts.param_count(arch, no_affine) == darts.param_count(arch, config) - (
        (16 + 8 + 8 + 16 + 8) + (32 + 16 + 16 + 32 + 16))


def test_layer_table_and_active_mask_add_up_to_the_param_count():
    config = darts.Config()
    network = darts.network(config)
    names = [layer.name for layer in network.layers]
    # stem; per cell 2 preprocessing convs (FR: 2 halves), 8 slots x (4 + 4 + 2 + 2) convs,
    # plus 2 FR convs per slot in the 2 reduce cells; classifier.
    assert len(names) == 1 + 8 * (2 + 8 * 12) + 2 * 8 * 2 + 2 + 1
    for arch in ARCHS + (DARTS_V2,):
        genotype = darts.check_arch(arch)
        used = [layer for layer, on in zip(network.layers, network.active(genotype)) if on]
        # An affine BN after the stem, each preprocessing conv and each pointwise conv;
        # one per FactorizedReduce (over both halves).
        bn = {"factorized_a": 4, "factorized_b": 0}
        bn_params = sum(
            bn.get(layer.name.split("/")[-1], 2) * layer.shape[-1] for layer in used
            if layer.batch_norm or "factorized" in layer.name)
        classifier_bias = 10
        assert sum(layer.size for layer in used) + bn_params + classifier_bias \
            == darts.param_count(genotype), arch
