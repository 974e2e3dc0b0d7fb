"""Fuzzing the public entry points with hypothesis: bad input is one clear error, never a
crash, a hang, or a compilation.

Property, for arch strings and genotypes of every space, batches, proxy lists and options
given to ``check_arch``, ``zcjax.score``, ``make_scorer(...)(...)``, ``score_space``,
``correlate``, ``load_benchmark`` and the CLI: each call returns its documented result or
raises ValueError / TypeError / KeyError (FileNotFoundError where a path is the input)
with a non-empty message; nothing else. The compiled scorer is replaced by a stub that
fails the test unless what reaches it is valid (int32 genotype of the space's shape,
float32 NHWC images of the network's size, int32 labels in range), so no input that
validation could have rejected is ever compiled, and the examples run in milliseconds.

The CI profile tries a few hundred examples per test; ``-m slow`` runs the same
properties with 10,000 (``FUZZ_EXAMPLES`` overrides both).
"""

import dataclasses
import os
import string
import time

import jax
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import zcjax
from zcjax import api, benchmarks, bulk, cli, data, proxies
from zcjax.proxies import registry

CI_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 200))
SLOW_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 10_000))
CLEAR = (ValueError, TypeError, KeyError)
SECONDS_PER_EXAMPLE = 30.0  # above any validation (DARTS' first network build ~10 s)

SPACES = zcjax.space_names()
PROXY_NAMES = proxies.names()
OPTION_NAMES = sorted({option.name for name in PROXY_NAMES
                       for option in registry.options_read(proxies.get(name))})

# ------------------------------------------------------------------ strategies
dtypes = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                   hnp.floating_dtypes(), hnp.boolean_dtypes(), hnp.complex_number_dtypes())
small_arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=4, max_side=8))


def well_formed(space_name):
    space = zcjax.get_space(space_name)
    return st.integers(0, 2 ** 31 - 1).map(
        lambda seed: space.decode(space.sample(jax.random.key(seed), 1)[0]))


def mutated(text_strategy):
    """A well-formed string with one character replaced, deleted or inserted."""
    def change(args):
        text, position, char, how = args
        position %= max(len(text), 1)
        if how == 0:
            return text[:position] + char + text[position + 1:]
        if how == 1:
            return text[:position] + text[position + 1:]
        return text[:position] + char + text[position:]
    return st.tuples(text_strategy, st.integers(0, 10 ** 6),
                     st.sampled_from(string.printable), st.integers(0, 2)).map(change)


def arch_inputs(space_name):
    space = zcjax.get_space(space_name)
    good = space.sample(jax.random.key(0), 1)[0]
    return st.one_of(
        well_formed(space_name),
        mutated(well_formed(space_name)),
        st.text(max_size=300),
        st.binary(max_size=100),
        st.text(min_size=5000, max_size=20000, alphabet="|~+0123nonekip_cvx"),
        st.integers(), st.floats(), st.none(), st.lists(st.integers(-3, 9), max_size=60),
        small_arrays,
        hnp.arrays(dtypes, st.just(good.shape)),  # the right shape, any dtype and value
        st.builds(lambda d: good + d, st.integers(-6, 6)),  # right shape, shifted values
    )


def label_arrays(n):
    return st.one_of(
        hnp.arrays(hnp.integer_dtypes(), (n,), elements=st.integers(-3, 12)),
        hnp.arrays(hnp.integer_dtypes(), (n, 10), elements=st.integers(0, 1)),  # one-hot
        hnp.arrays(hnp.floating_dtypes(), (n,)),
        small_arrays,
    )


@st.composite
def batches(draw):
    """Mostly near-valid (images N x S x S x 3) with one thing wrong, or anything."""
    n = draw(st.integers(0, 4))
    size = draw(st.sampled_from([16, 32, 8, 3]))
    shape = draw(st.sampled_from([(n, size, size, 3), (n, 3, size, size), (n, size, size),
                                  (n, size, size, 4)]))
    images = draw(st.one_of(
        hnp.arrays(hnp.floating_dtypes(sizes=(32, 64)), shape,
                   elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
        hnp.arrays(dtypes, shape)))
    labels = draw(label_arrays(n))
    return draw(st.sampled_from([
        (images, labels), [images, labels], (images,), (images, labels, labels),
        {"images": images, "labels": labels}, (images.tolist(), labels.tolist()),
        None, images]))


proxy_lists = st.one_of(
    st.none(), st.text(max_size=40),
    st.lists(st.sampled_from(list(PROXY_NAMES) + ["snipp", "", "SNIP", " naswot"]), max_size=5),
    st.lists(st.one_of(st.integers(), st.none(), st.floats()), max_size=3),
    st.just(()), st.integers(),
)
option_values = st.one_of(st.text(max_size=10), st.integers(), st.floats(), st.booleans(),
                          st.none(), st.lists(st.integers(), max_size=2))
option_dicts = st.dictionaries(st.sampled_from(OPTION_NAMES + ["nonsense", "per_layer"]),
                               option_values, max_size=3)


def nb201_genotype():
    return zcjax.get_space("nb201").encode(
        "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|")


# ------------------------------------------------------------------ the stub and checks
def stub_unchecked(self):
    """In place of the compiled scorer: fail unless the input is one validation passed."""
    network, space = self.network, self.space

    def run(genotype, images, labels, key):
        expected = space.check_arch(np.asarray(genotype))  # raises if invalid
        assert np.asarray(genotype).dtype == np.int32
        assert np.asarray(genotype).shape == expected.shape
        assert images.dtype == np.float32 and images.ndim == 4 and images.shape[-1] == 3
        assert images.shape[1] == images.shape[2] == network.image_size
        assert labels.dtype == np.int32 and labels.shape == (images.shape[0],)
        assert images.shape[0] > 0
        assert np.all((0 <= np.asarray(labels)) & (np.asarray(labels) < network.num_classes))
        assert isinstance(key, jax.Array) and jax.numpy.issubdtype(key.dtype,
                                                                  jax.dtypes.prng_key)
        REACHED.append(space.name)
        return {name: np.float64(0.0) for name in self.proxies}

    return run


@pytest.fixture(autouse=True)
def no_compilation(monkeypatch):
    monkeypatch.setattr(api.Scorer, "unchecked", property(stub_unchecked))
    api._cached_scorer.cache_clear()
    yield
    api._cached_scorer.cache_clear()


def clear_or_result(call, *, allowed=CLEAR):
    """Run ``call``; an exception must be one of ``allowed`` with a message; bounded time."""
    started = time.perf_counter()
    try:
        result = call()
    except allowed as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        assert str(message).strip(), f"{type(error).__name__} without a message"
        result = error
    assert time.perf_counter() - started < SECONDS_PER_EXAMPLE, "too slow: a hang?"
    return result


def fuzz(examples):
    return settings(max_examples=examples, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])


def both_profiles(make):
    """The CI test and its slow 10,000-example twin, from one property factory."""
    ci = fuzz(CI_EXAMPLES)(make())
    slow = pytest.mark.slow(fuzz(SLOW_EXAMPLES)(make()))
    return ci, slow


# ------------------------------------------------------------------ properties
def check_arch_property():
    @given(st.sampled_from(SPACES).flatmap(lambda s: st.tuples(st.just(s), arch_inputs(s))))
    def test(case):
        space_name, arch = case
        space = zcjax.get_space(space_name)
        result = clear_or_result(lambda: space.check_arch(arch))
        if not isinstance(result, Exception):
            assert result.dtype == np.int32
            np.testing.assert_array_equal(space.encode(space.decode(result)), result)
    return test


test_check_arch, test_check_arch_slow = both_profiles(check_arch_property)


VALID_ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|"
VALID_BATCH = tuple(np.asarray(x) for x in data.sample_batch("cifar10", 4))
REACHED = []  # scorer calls that got through validation (the stub appends)


def score_property():
    @example(("nb201", VALID_ARCH), VALID_BATCH, ["params", "snip"], {}, None)
    @given(st.sampled_from(SPACES).flatmap(lambda s: st.tuples(st.just(s), arch_inputs(s))),
           batches(), proxy_lists, option_dicts,
           st.sampled_from([None, jax.random.key(0), 0, "key"]))
    def test(case, batch, proxy_list, options, key):
        space_name, arch = case
        result = clear_or_result(lambda: zcjax.score(arch, batch, proxies=proxy_list,
                                                     key=key, space=space_name, **options))
        if not isinstance(result, Exception):
            assert isinstance(result, dict) and all(isinstance(v, float)
                                                    for v in result.values())
            assert REACHED and REACHED.pop() == space_name
    return test


test_score, test_score_slow = both_profiles(score_property)


def make_scorer_property():
    @example(("nb201", nb201_genotype()), VALID_BATCH, "params,snip", {})
    @given(st.sampled_from(SPACES).flatmap(lambda s: st.tuples(st.just(s), arch_inputs(s))),
           batches(), proxy_lists, option_dicts)
    def test(case, batch, proxy_list, options):
        space_name, arch = case
        scorer = clear_or_result(lambda: zcjax.make_scorer(space_name, proxy_list,
                                                           **options))
        if isinstance(scorer, Exception):
            return
        result = clear_or_result(lambda: scorer(arch, batch, jax.random.key(0)))
        if not isinstance(result, Exception):
            assert set(result) == set(scorer.proxies)
            assert REACHED and REACHED.pop() == space_name
    return test


test_make_scorer, test_make_scorer_slow = both_profiles(make_scorer_property)


class _StubChunkScorer:
    """score_space's scorer, compiling nothing: zeros after checking what reaches it."""

    def __init__(self, spec):
        self.proxies = spec.proxies
        self.compile_seconds = 0.0

    def __call__(self, genotypes, on_each=None):
        return np.zeros((len(genotypes), len(self.proxies))), np.zeros(len(genotypes))


def score_space_property():
    @given(st.sampled_from(SPACES), proxy_lists, batches(),
           st.one_of(st.integers(-2, 3), st.text(max_size=3), st.none(), st.floats()),
           st.one_of(st.text(max_size=8), st.none(), st.integers()),
           st.one_of(st.none(), st.lists(st.text(max_size=20), max_size=3),
                     st.text(max_size=20)),
           st.one_of(st.integers(-1, 4), st.none(), st.floats()),
           st.one_of(st.integers(-1, 3), st.floats()))
    def test(space_name, proxy_list, batch, key, dataset, archs, chunk, workers):
        out = FOLDERS.pop()
        try:
            result = clear_or_result(lambda: bulk.score_space(
                space_name, proxy_list, batch, key=key, out=out, dataset=dataset,
                archs=archs, chunk=chunk, workers=workers, progress=False))
            if not isinstance(result, Exception):
                assert isinstance(result, bulk.Summary)
        finally:
            FOLDERS.append(out)
    return test


FOLDERS: list = []


@pytest.fixture(autouse=True)
def stub_chunk_scorer(monkeypatch, tmp_path):
    monkeypatch.setattr(bulk, "ChunkScorer", _StubChunkScorer)
    FOLDERS[:] = [tmp_path / "store"]


test_score_space, test_score_space_slow = both_profiles(score_space_property)


TOY = benchmarks.Benchmark("toy", pd.DataFrame(
    {"cifar10": np.linspace(50, 90, 8)}, index=pd.Index([f"a{i}" for i in range(8)],
                                                        name="arch")))
cells = st.one_of(st.sampled_from([f"a{i}" for i in range(10)]), st.integers(), st.none(),
                  st.floats(), st.text(max_size=4))


def correlate_property():
    @example([("a0", "p", 0.0), (None, "p", 0.0), (None, "", 0.0)], set(), "cifar10", None,
             1.0, 1)  # found by the 10,000-example run: an empty proxy name
    @given(st.lists(st.tuples(cells, st.one_of(st.sampled_from(["p", "q"]), cells),
                              st.floats(allow_nan=True, allow_infinity=True)), max_size=20),
           st.sets(st.sampled_from(["arch", "proxy", "value", "seed", "space"]), max_size=5),
           st.one_of(st.sampled_from(["cifar10", "CIFAR10", "cifar100"]), st.text(max_size=5)),
           st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=2)),
           st.floats(-1, 2), st.integers(-2, 60))
    def test(triples, dropped, dataset, proxy_list, top_fraction, top_k):
        frame = pd.DataFrame(triples, columns=["arch", "proxy", "value"]).assign(
            seed=0, space="toy")
        frame = frame.drop(columns=sorted(dropped & {"arch", "proxy", "value"}))
        result = clear_or_result(lambda: zcjax.correlate(
            frame, TOY, dataset, proxies=proxy_list, top_fraction=top_fraction, top_k=top_k))
        if not isinstance(result, Exception):
            assert isinstance(result, pd.DataFrame)
    return test


test_correlate, test_correlate_slow = both_profiles(correlate_property)


def load_benchmark_property():
    @given(st.one_of(st.text(max_size=40),
                     st.sampled_from(list(benchmarks.BENCHMARKS) + ["nb201.csv", "x.json.gz",
                                                                    "/", ".", "~"])),
           st.one_of(st.none(), st.sampled_from(SPACES), st.text(max_size=6)))
    def test(name, space):
        # Documented besides: a missing file; a folder read as NATS-Bench API files
        # without the nats_bench package (ImportError saying to install it).
        result = clear_or_result(lambda: benchmarks.load_benchmark(name, space=space),
                                 allowed=CLEAR + (FileNotFoundError, ImportError))
        if not isinstance(result, Exception):
            assert isinstance(result, benchmarks.Benchmark)
    return test


@pytest.fixture(autouse=True)
def no_benchmark_files(monkeypatch, tmp_path):
    for source in benchmarks.BENCHMARKS.values():
        monkeypatch.delenv(source.variable, raising=False)
    monkeypatch.delenv(benchmarks.BENCHMARK_DIR_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)


test_load_benchmark, test_load_benchmark_slow = both_profiles(load_benchmark_property)


words = st.one_of(st.sampled_from(["nb201", "nb101", "darts", "--n", "3", "-1", "0", "--proxies",
                                   "snip", "params", "--seed", "--chunk", "--out", "o",
                                   "--data", "cifar10", "cifar11", "--batch-size", "--sample",
                                   "--space", "--algorithm", "evolution", "--queries",
                                   "--warmup", "--move", "--top-k", "--select", "a=b",
                                   "--dataset", "x", "--no-progress", "--help"]),
                  st.text(max_size=8))


def cli_property():
    @given(st.sampled_from(["score", "score-space", "correlate", "search", "nonsense"]),
           st.lists(words, max_size=8))
    def test(command, arguments):
        # score-space without --n scores the whole space: legitimate minutes, not a hang.
        argv = [command, *(["--n", "3"] if command == "score-space" else []), *arguments]
        if "--help" in argv or "-h" in argv:
            argv = [a for a in argv if a not in ("--help", "-h")]
        try:
            code = clear_or_result(lambda: cli.main(argv), allowed=())
        except SystemExit as stop:  # argparse: a usage error, exit status 2
            assert stop.code == 2
            return
        assert code in (0, 2)
    return test


test_cli, test_cli_slow = both_profiles(cli_property)


def test_the_cli_in_a_subprocess_fails_cleanly_on_bad_arguments(tmp_path):
    """The console script itself: bad arguments are one usage line, exit 2."""
    import subprocess
    import sys

    for argv in (["score", "--sample", "-3"], ["score-space", "nb202"],
                 ["search", "nb201", "--algorithm", "nope"], ["correlate", "missing"]):
        done = subprocess.run([sys.executable, "-m", "zcjax.cli", *argv], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.strip(), done.stderr
