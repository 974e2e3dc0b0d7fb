"""NAS-Bench-201 against outside sources: the codec against the benchmark table and its
error messages, parameter counts against the benchmark and NASLib, FLOPs and the layer
table by hand. What every space must satisfy is in test_space_conformance.py."""

import gzip
import json

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ARCHS, shared_file
from zcjax.spaces import nb201

# ---------------------------------------------------------------------------- codec


def test_codec_agrees_with_the_benchmark_table():
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(shared_file("nb201", "nb201_accuracies.csv.gz"))
    assert set(table.arch_str) == set(nb201.arch_strings(nb201.all_genotypes()))
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    np.testing.assert_array_equal(nb201.encode(arch), [3, 3, 4, 1, 3, 1])
    assert nb201.decode([3, 3, 4, 1, 3, 1]) == arch


@pytest.mark.parametrize("arch,message", [
    ("|nor_conv_3x3~0|+|none~0|skip_connect~1|", "3 '\\+'-separated nodes"),
    ("|conv~0|+|none~0|skip_connect~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "input 0 is written '~1'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 .* must have 2 inputs"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 part"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2| ", "node 3 part"),
    ("|none~00|+|none~0|none~1|+|none~0|none~1|none~2|", "written '~00'"),
])
def test_malformed_arch_names_the_offending_part(arch, message):
    with pytest.raises(ValueError, match=message):
        nb201.encode(arch)


def _mutations():
    valid = st.sampled_from(nb201.arch_strings(nb201.all_genotypes()[::97]))
    pieces = st.sampled_from(list("|+~0123_ abnonecovskiplr") + ["nor_conv_3x3", "none", "~0|"])
    edits = st.tuples(st.integers(0, 80), st.integers(0, 6),
                      st.lists(pieces, max_size=3).map("".join))
    return st.one_of(
        st.text(max_size=60),
        st.builds(lambda arch, edit: arch[:edit[0]] + edit[2] + arch[edit[0] + edit[1]:],
                  valid, edits),
    )


@settings(max_examples=400, deadline=None)
@given(_mutations())
def test_fuzzed_strings_either_round_trip_or_raise_value_error(text):
    try:
        genotype = nb201.encode(text)
    except ValueError as error:
        assert "NB201" in str(error)
    else:  # the edit produced another valid arch: it must be canonical
        assert nb201.decode(genotype) == text


def test_sample_is_uniform():
    a = nb201.sample(jax.random.key(0), 500)
    # Each op appears on each edge about a fifth of the time.
    frequencies = np.stack([(a == op).mean(0) for op in range(5)])
    assert np.all(np.abs(frequencies - 0.2) < 0.07)


# ---------------------------------------------------------------- params and FLOPs


def test_param_count_equals_the_benchmark_for_every_good_row():
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(shared_file("nb201", "nb201_accuracies.csv.gz"))
    suspect = pandas.read_csv(shared_file("nb201", "params_mb_suspect_rows.csv"))
    ours = np.array([nb201.param_count(arch) for arch in table.arch_str]) / 1e6
    good = ~table.arch_str.isin(suspect.arch_str).to_numpy()
    assert good.sum() == 15421
    np.testing.assert_allclose(ours[good], table.params_mb[good], rtol=0, atol=5e-7)
    # The 204 known-bad rows: the exact count an independent PyTorch model gives.
    exact = dict(zip(suspect.arch_str, suspect.params_m_exact_by_reference_model))
    np.testing.assert_allclose([nb201.param_count(a) / 1e6 for a in exact], list(exact.values()),
                               atol=5e-7)


def test_param_count_equals_naslib_suite_zero():
    records = json.load(gzip.open(shared_file("nb201", "naslib_zc_nasbench201_725.6639fd15.json.gz")))
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(shared_file("nb201", "nb201_accuracies.csv.gz"), dtype={"naslib_op_indices": str})
    by_naslib = dict(zip(table.naslib_op_indices, table.arch_str))
    for key, record in records["cifar10"].items():
        arch = by_naslib["".join(key.strip("()").replace(" ", "").split(","))]
        assert nb201.param_count(arch) / 1e6 == pytest.approx(record["params"]["score"], abs=5e-7)


def test_flops_by_hand_for_a_one_cell_network():
    config = nb201.Config(channels=(2, 4, 8), cells_per_stage=1, num_classes=3, image_size=8)
    arch = "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|nor_conv_1x1~0|skip_connect~1|none~2|"
    stem = 8 * 8 * 2 * 3 * 9
    cells = (8 * 8 * 2 * 2 * 9 + 8 * 8 * 2 * 9 + 8 * 8 * 2 * 2) \
        + (4 * 4 * 4 * 4 * 9 + 4 * 4 * 4 * 9 + 4 * 4 * 4 * 4) \
        + (2 * 2 * 8 * 8 * 9 + 2 * 2 * 8 * 9 + 2 * 2 * 8 * 8)
    reduction_1 = 4 * 4 * 4 * 2 * 9 + 4 * 4 * 4 * 4 * 9 + 4 * 4 * 2 * 4 + 4 * 4 * 4 * 2
    reduction_2 = 2 * 2 * 8 * 4 * 9 + 2 * 2 * 8 * 8 * 9 + 2 * 2 * 4 * 4 + 2 * 2 * 8 * 4
    head = 8 * 3 + 3
    assert nb201.flops(arch, config) == stem + cells + reduction_1 + reduction_2 + head
    params = (3 * 9 * 2 + 4) + (2 * 2 * 9 + 4 + 2 * 2 + 4 + 4 * 4 * 9 + 8 + 4 * 4 + 8 + 8 * 8 * 9
                                + 16 + 8 * 8 + 16) \
        + (2 * 4 * 9 + 8 + 4 * 4 * 9 + 8 + 2 * 4) + (4 * 8 * 9 + 16 + 8 * 8 * 9 + 16 + 4 * 8) \
        + (16 + 8 * 3 + 3)
    assert nb201.param_count(arch, config) == params


def test_layer_table_and_active_mask():
    network = nb201.network()
    names = [layer.name for layer in network.layers]
    assert len(names) == len(set(names)) == 1 + 2 * 3 + 3 * 5 * 6 * 2 + 1
    assert names[0] == "stem/conv" and names[-1] == "classifier"
    genotype = nb201.encode(ARCHS[0])
    active = np.asarray(network.active(genotype))
    # stem, 2 x 3 reduction convs, classifier, and 2 convs per cell x 15 cells.
    assert active.sum() == 1 + 6 + 1 + 2 * 15
    for layer, used in zip(network.layers, active):
        if "/edge_1_0/" in layer.name:
            assert used == layer.name.endswith("conv3x3")
        if "/edge_3_0/" in layer.name:
            assert used == layer.name.endswith("conv1x1")
    # Active weights add up to the benchmark's parameter count minus BN and biases.
    sizes = [layer.size for layer in network.layers]
    conv_and_linear = sum(s for s, used in zip(sizes, active) if used)
    bn_and_bias = 2 * 16 + 4 * 32 + 4 * 64 + 2 * 64 + 10 + 15 * 2 * (2 * 16 + 2 * 32 + 2 * 64) / 3
    assert conv_and_linear + bn_and_bias == nb201.param_count(genotype)
