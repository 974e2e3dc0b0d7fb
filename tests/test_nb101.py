"""NAS-Bench-101 against outside sources: the codec and validation against the benchmark's
rules and NASLib's keys, pruning and vertex channels as the benchmark computes them,
parameter counts and FLOPs against NAS-Bench-Suite-Zero and by hand, the network against
the benchmark's forward pass, and one compiled scorer per shape signature. What every
space must satisfy is in test_space_conformance.py (FIXTURES["nb101"] holds archs of one
signature)."""

import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zcjax
from conftest import shared_file
from test_space_conformance import FIXTURES
from zcjax.network import sown_values
from zcjax.proxies.base import cross_entropy
from zcjax.spaces import nb101

# The conformance suite's network and archs: NAS-Bench-Suite-Zero keys of one signature.
SMALL = nb101.Config(**FIXTURES["nb101"].config)
SAME_SIGNATURE = FIXTURES["nb101"].archs
TINY = nb101.Config(stem_channels=4, stacks=2, cells_per_stack=1, image_size=16)

# The cell of the benchmark's README (google-research/nasbench).
README_MATRIX = [[0, 1, 1, 1, 0, 1, 0],
                 [0, 0, 0, 0, 0, 0, 1],
                 [0, 0, 0, 0, 0, 0, 1],
                 [0, 0, 0, 0, 1, 0, 0],
                 [0, 0, 0, 0, 0, 0, 1],
                 [0, 0, 0, 0, 0, 0, 1],
                 [0, 0, 0, 0, 0, 0, 0]]
README_OPS = ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu",
              "conv3x3-bn-relu", "maxpool3x3", "output"]


@pytest.fixture(scope="module")
def records():
    """NAS-Bench-Suite-Zero's 500 NB101 archs: {NASLib tuple string: fields}."""
    path = shared_file("nb101", "naslib_zc_nasbench101_500.22280f71.json.gz")
    return json.load(gzip.open(path))["nasbench101"]["cifar10"]


def _matrix(edges):
    matrix = np.zeros((7, 7), np.int64)
    for source, target in edges:
        matrix[source, target] = 1
    return matrix


def _genotype(matrix, ops=(0, 4, 4, 4, 4, 4, 1)):
    return np.concatenate([np.asarray(matrix).ravel(), ops])


# ---------------------------------------------------------------------------- codec


def test_codec_round_trips_the_500_suite_zero_archs(records):
    assert len(records) == 500
    genotypes = np.stack([nb101.encode(key) for key in records])
    assert genotypes.shape == (500, 56) and genotypes.dtype == np.int32
    assert nb101.arch_strings(genotypes) == list(records)
    for genotype in genotypes[:50]:
        matrix, ops = nb101.to_spec(genotype, prune=False)
        np.testing.assert_array_equal(nb101.from_spec(matrix, ops), genotype)


def test_suite_zero_archs_are_valid_only_after_pruning(records):
    """The benchmark counts the pruned graph's edges: most keys have dangling vertices."""
    raw_edges, pruned_edges = [], []
    for key in records:
        genotype = nb101.encode(key)
        raw_edges.append(genotype[:49].sum())
        pruned_edges.append(nb101.to_spec(genotype)[0].sum())
    assert max(raw_edges) > 9 and max(pruned_edges) <= 9


def test_readme_spec_encodes_by_hand():
    genotype = nb101.from_spec(README_MATRIX, README_OPS)
    np.testing.assert_array_equal(genotype[:49], np.ravel(README_MATRIX))
    np.testing.assert_array_equal(genotype[49:], [0, 3, 4, 4, 4, 2, 1])
    assert nb101.decode(genotype).startswith("(0, 1, 1, 1, 0, 1, 0, 0, 0, 0,")
    assert nb101.check_arch((README_MATRIX, README_OPS)).tolist() == genotype.tolist()
    assert nb101.check_arch({"matrix": README_MATRIX, "ops": README_OPS}).tolist() == \
        genotype.tolist()
    # Nothing to prune: the benchmark's own (matrix, ops).
    matrix, ops = nb101.to_spec(genotype)
    assert matrix.tolist() == README_MATRIX and ops == README_OPS


def test_a_smaller_spec_is_padded_as_naslib_does():
    matrix = [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    genotype = nb101.from_spec(matrix, ["input", "maxpool3x3", "output"])
    expected = _matrix([(0, 1), (0, 6), (1, 6)])
    np.testing.assert_array_equal(genotype[:49], expected.ravel())
    np.testing.assert_array_equal(genotype[49:], [0, 2, 4, 4, 4, 4, 1])
    assert nb101.to_spec(genotype)[0].tolist() == matrix


@pytest.mark.parametrize("matrix,ops,message", [
    (np.zeros((7, 6)), README_OPS, "must be square"),
    (np.zeros((8, 8)), README_OPS + ["output"], "2 to 7 vertices"),
    (README_MATRIX, README_OPS[:-1], "needs 7 ops"),
    (np.where(np.eye(7, k=1) > 0, 2, 0), README_OPS, "0 or 1"),
    (np.asarray(README_MATRIX) + _matrix([(3, 1)]), README_OPS,
     "on or below the diagonal at \\[\\(3, 1\\)\\]"),
    (README_MATRIX, ["input", "conv5x5"] + README_OPS[2:], "vertex 1 has unknown op 'conv5x5'"),
    (README_MATRIX, ["input", "input"] + README_OPS[2:], "vertex 1 has op code 0"),
    (README_MATRIX, ["conv3x3-bn-relu"] + README_OPS[1:], "vertex 0 must be the input"),
    (README_MATRIX, README_OPS[:-1] + ["maxpool3x3"], "vertex 6 the output"),
    (_matrix([(0, 1), (2, 6), (1, 3)]), README_OPS, "input is not connected to the output"),
    (np.triu(np.ones((7, 7), int), 1), README_OPS, "21 edges after pruning"),
    (_matrix([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (0, 2), (0, 3), (0, 4), (0, 6)]),
     README_OPS, "10 edges after pruning; the benchmark allows at most 9"),
])
def test_invalid_specs_raise_a_clear_error(matrix, ops, message):
    with pytest.raises(ValueError, match=message):
        nb101.from_spec(matrix, ops)


@pytest.mark.parametrize("genotype,message", [
    (np.zeros(55, int), "shape \\(56,\\)"),
    (np.zeros(56), "integers"),
    (_genotype(_matrix([(0, 6)]), (0, 4, 4, 5, 4, 4, 1)), "vertex 3 has op code 5"),
    (_genotype(_matrix([(0, 6), (6, 0)])), "on or below the diagonal at \\[\\(6, 0\\)\\]"),
])
def test_invalid_genotypes_raise_a_clear_error(genotype, message):
    with pytest.raises(ValueError, match=message):
        nb101.decode(genotype)


@pytest.mark.parametrize("arch,message", [
    ("(0, 1, 0", "malformed NB101 arch"),
    ("[0, 1]", "malformed NB101 arch"),
    ("(" + ", ".join(["0"] * 55) + ")", "expected 56 integers, got 55"),
    ("(0, 1, x)", "malformed NB101 arch"),
])
def test_malformed_strings(arch, message):
    with pytest.raises(ValueError, match=message):
        nb101.encode(arch)


def test_sample_draws_ops_uniformly():
    a = nb101.sample(jax.random.key(0), 200)
    interior = a[:, 50:55]
    for op in (2, 3, 4):  # each interior op about a third of the time
        assert abs((interior == op).mean() - 1 / 3) < 0.06


# ---------------------------------------------------------------------------- pruning


def test_pruning_drops_vertices_off_every_input_output_path():
    # 3 is a dead end, 4 unreachable from the input, 5 reachable only from 4.
    edges = [(0, 1), (1, 6), (0, 2), (2, 3), (2, 6), (4, 6), (4, 5)]
    genotype = _genotype(_matrix(edges), (0, 3, 2, 4, 4, 4, 1))
    matrix, ops = nb101.to_spec(genotype)
    assert matrix.tolist() == [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert ops == ["input", "conv1x1-bn-relu", "maxpool3x3", "output"]
    # Unpruned, vertex 4 would take a third of the output's channels; pruned, the two
    # remaining vertices take half each.
    signature = nb101.signature(genotype)
    assert signature.to_output == (True, True)
    assert signature.channels == ((64, 64), (128, 128), (256, 256))
    same = nb101.from_spec(matrix, ops)
    assert nb101.signature(same) == signature
    assert nb101.param_count(same) == nb101.param_count(genotype)


def test_vertex_channels_split_the_output_and_follow_successors():
    # Output fed by 1, 2, 4 (128 = 43 + 43 + 42); 3 feeds only 4, so takes 42.
    matrix = np.asarray([[0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1],
                         [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]])
    assert nb101.compute_vertex_channels(64, 128, matrix) == [64, 43, 43, 42, 42, 128]


# ------------------------------------------------------------------ params and FLOPs


def test_param_count_and_flops_equal_suite_zero_for_all_500(records):
    for key, record in records.items():
        genotype = nb101.encode(key)
        assert nb101.param_count(genotype) / 1e6 == pytest.approx(record["params"], abs=5e-7)
        assert nb101.flops(genotype) / 1e6 == pytest.approx(record["flops"], abs=5e-7)


def test_counts_by_hand_for_the_readme_cell():
    config = nb101.Config(stem_channels=8, stacks=2, cells_per_stack=1, image_size=8)
    arch = (README_MATRIX, README_OPS)
    # Output fed by vertices 1, 2, 4, 5: C/4 channels each; 3 feeds 4. Projections into
    # 1, 2, 3, 5; ops conv1x1, conv3x3 x3, maxpool.
    stem = 27 * 8 + 2 * 8
    cell_0 = 4 * (8 * 2 + 2 * 2) + (2 * 2 + 2 * 2) + 3 * (9 * 2 * 2 + 2 * 2)
    cell_1 = 4 * (8 * 4 + 2 * 4) + (4 * 4 + 2 * 4) + 3 * (9 * 4 * 4 + 2 * 4)
    classifier = 16 * 10 + 10
    assert nb101.param_count(arch, config) == stem + cell_0 + cell_1 + classifier
    stem = 64 * 27 * 8 + 3 * 64 * 8  # BN 2 + ReLU 1 per output element
    cell_0 = 64 * (4 * (8 * 2 + 3 * 2) + (2 * 2 + 3 * 2) + 3 * (9 * 2 * 2 + 3 * 2) + 9 * 2)
    pool = 16 * 8 * 4
    cell_1 = 16 * (4 * (8 * 4 + 3 * 4) + (4 * 4 + 3 * 4) + 3 * (9 * 4 * 4 + 3 * 4) + 9 * 4)
    assert nb101.flops(arch, config) == stem + cell_0 + pool + cell_1 + 16 * 10


def test_the_500_suite_zero_archs_have_20_signatures(records):
    """Scoring them compiles 20 networks, not 500."""
    assert len({nb101.signature(key) for key in records}) == 20


@pytest.mark.parametrize("index", [0, 1, 5, 17])
def test_active_layer_shapes_add_up_to_the_param_count(records, index):
    """The layer table and active mask against the analytic count: active conv/linear
    weights, plus a BN affine pair per active conv and the classifier bias."""
    genotype = nb101.encode(list(records)[index])
    network = nb101.network(signature=nb101.signature(genotype))
    active = np.asarray(network.active(genotype))
    total = sum(layer.size + (2 * layer.shape[-1] if layer.kind == "conv" else 0)
                for layer, used in zip(network.layers, active) if used)
    assert total + network.num_classes == nb101.param_count(genotype)
    # The benchmark's modules: stem, classifier, per cell one projection per input edge
    # and one conv per conv vertex.
    matrix, ops = nb101.to_spec(genotype)
    per_cell = matrix[0, 1:].sum() + sum(op.startswith("conv") for op in ops)
    assert active.sum() == 2 + 9 * per_cell


# ------------------------------------------------- the network against the benchmark's


@pytest.fixture(scope="module")
def reference_runs(tiny_batch):
    """Per SAME_SIGNATURE arch: the reference network's loss, sown ReLU counts and the
    variables (the compiled network equals the reference: test_space_conformance.py)."""
    images, labels = tiny_batch
    network = nb101.network(SMALL, nb101.signature(SAME_SIGNATURE[0], SMALL))
    variables = network.init(jax.random.key(7))
    runs = []
    for arch in SAME_SIGNATURE:
        reference = nb101.reference_network(SMALL, nb101.signature(arch, SMALL))
        logits, collections = reference.apply(variables, nb101.encode(arch), images,
                                              capture=True)
        relus = sum(int(jnp.sum(readers)) for _, readers, _ in sown_values(collections["relu"]))
        runs.append((cross_entropy(logits, labels), relus))
    return variables, runs


@pytest.mark.parametrize("position", range(len(SAME_SIGNATURE)))
def test_relu_modules_are_counted_as_the_benchmark_has_them(reference_runs, position):
    # naswot's ReLU modules: the stem's, and per cell one per projection and conv vertex.
    matrix, ops = nb101.to_spec(SAME_SIGNATURE[position])
    per_cell = matrix[0, 1:].sum() + sum(op.startswith("conv") for op in ops)
    assert reference_runs[1][position][1] == 1 + 4 * per_cell


def _benchmark_logits(params, arch, config, images):
    """The benchmark's forward pass written out from NASLib's ``nasbench1.Network`` (plain
    jax.numpy, Python control flow over the pruned spec), reading zcjax's parameters."""
    matrix, ops = nb101.to_spec(arch)
    size = len(matrix)

    def conv_bn_relu(prefix, p, x):
        y = jax.lax.conv_general_dilated(x, p[f"{prefix}_conv"]["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        mean, var = y.mean((0, 1, 2)), y.var((0, 1, 2))
        bn = p[f"{prefix}_bn"]
        return jax.nn.relu((y - mean) / jnp.sqrt(var + 1e-5) * bn["scale"] + bn["bias"])

    x = conv_bn_relu("stem", params, images)
    c_in = c_out = config.stem_channels
    for stack in range(config.stacks):
        if stack:
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            c_out *= 2
        for cell in range(config.cells_per_stack):
            # Stack 0 scans all its cells; later stacks run cell 0 alone, then scan the rest.
            module, index = ((f"cells_{stack}_0", cell) if stack == 0 or cell == 0
                             else (f"cells_{stack}_1", cell - 1))
            p = jax.tree.map(lambda a: a[index], params[module])
            channels = nb101.compute_vertex_channels(c_in, c_out, matrix)
            cell_input, tensors, concat = x, [x], []
            for t in range(1, size - 1):
                fan_in = [tensors[s][..., :channels[t]] for s in range(1, t) if matrix[s, t]]
                if matrix[0, t]:
                    fan_in.append(conv_bn_relu(f"input{t}", p, cell_input))
                total = sum(fan_in)
                if ops[t] == "maxpool3x3":
                    out = jax.lax.reduce_window(total, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                                                (1, 1, 1, 1), "SAME")
                else:
                    k = 3 if ops[t] == "conv3x3-bn-relu" else 1
                    out = conv_bn_relu(f"vertex{t}_conv{k}x{k}", p, total)
                tensors.append(out)
                if matrix[t, size - 1]:
                    concat.append(out)
            if not concat:
                x = conv_bn_relu(f"input{size - 1}", p, cell_input)
            else:
                x = jnp.concatenate(concat, axis=-1)
                if matrix[0, size - 1]:
                    x = x + conv_bn_relu(f"input{size - 1}", p, cell_input)
            c_in = c_out
    classifier = params["classifier"]
    return x.mean((1, 2)) @ classifier["kernel"] + classifier["bias"]


@pytest.mark.parametrize("position", range(len(SAME_SIGNATURE)))
def test_network_computes_the_benchmarks_forward(reference_runs, tiny_batch, position):
    variables, runs = reference_runs
    images, labels = tiny_batch
    logits = _benchmark_logits(variables["params"], SAME_SIGNATURE[position], SMALL, images)
    np.testing.assert_allclose(runs[position][0], cross_entropy(logits, labels), rtol=1e-5)


def test_a_genotype_of_another_signature_is_rejected():
    network = nb101.network(SMALL, nb101.signature(SAME_SIGNATURE[0], SMALL))
    other = nb101.from_spec(README_MATRIX, README_OPS)
    variables = jax.eval_shape(network.init, jax.random.key(0))
    with pytest.raises(ValueError, match="has signature"):
        network.apply(variables, other, jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="signature="):
        nb101.network(SMALL)


# ------------------------------------------------------------------------ scoring


def test_make_scorer_compiles_once_per_signature(tiny_batch):
    # params is the benchmark's count: it tells the archs apart without compiling a
    # gradient (the conformance suite scores them with snip and naswot).
    scorer = zcjax.make_scorer("nb101", ("params",), config=TINY)
    first, second = nb101.encode(SAME_SIGNATURE[0]), nb101.encode(SAME_SIGNATURE[1])
    only_projection = nb101.from_spec([[0, 1], [0, 0]], ["input", "output"])
    results = [scorer(g, tiny_batch, jax.random.key(0)) for g in (first, second, only_projection)]
    for genotype, scores in zip((first, second, only_projection), results):
        assert scores["params"] == pytest.approx(nb101.param_count(genotype, TINY) / 1e6)
    assert scorer.for_genotype(first) is scorer.for_genotype(second)
    assert scorer.for_genotype(first).compiled._cache_size() == 1
    assert scorer.for_genotype(only_projection) is not scorer.for_genotype(first)


def test_score_takes_the_naslib_string_and_counts_as_the_benchmark(records):
    key = list(records)[0]
    batch = zcjax.data.sample_batch("cifar10", 2)
    scores = zcjax.score(key, batch, proxies=("params", "flops"), space="nb101")
    assert scores["params"] == pytest.approx(records[key]["params"], rel=1e-6)
    assert scores["flops"] == pytest.approx(records[key]["flops"], rel=1e-6)
