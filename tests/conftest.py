"""Shared fixtures: small NB201 configs, keys, the bundled batch, the shared data folder."""

import ctypes
import gc
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import jax
import numpy as np
import pytest

import zcjax
from zcjax.proxies.base import cross_entropy
from zcjax.spaces import nb201

# No per-user compilation cache in tests (zcjax.cache): a test that wants one makes its own,
# and the user's ~/.cache is left alone. Subprocesses of the tests inherit this.
os.environ[zcjax.cache.CACHE_DIR_ENV] = "off"

# ../shared/data beside the repository (never copied into it).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

SMALL = nb201.Config(channels=(4, 8, 16), cells_per_stage=2)
# For suites that compile every proxy several times: 16x16 inputs, one cell per stage.
TINY = nb201.Config(channels=(2, 4, 8), cells_per_stage=1, image_size=16)

# Architectures covering every op, degenerate ones included.
ARCHS = (
    "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|",
)
# Those whose output depends on the input (no proxy is degenerate on them).
CONNECTED_ARCHS = ARCHS[:5]


def in_ci() -> bool:
    """Whether the tests run under CI (the ``CI`` environment variable is true)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str, *, module_level: bool = False) -> NoReturn:
    """A test's data or reference package is missing: skip locally, FAIL under ``CI=true``.

    Locally a missing ``../shared`` file or PyTorch reference only means that part of the
    suite cannot run here. In CI the same absence would silently drop the checks that the
    README's claims rest on, so there it fails with ``reason``. ``module_level`` is for
    calls at import time (the whole module is skipped, or fails to collect).
    """
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing test dependency fails instead of "
                    "skipping; unset CI to skip)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def import_or_unavailable(name: str):
    """``pytest.importorskip`` that fails under ``CI=true`` (see :func:`unavailable`);
    call it at module level."""
    try:
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - any import failure counts (e.g. a bad wheel)
        unavailable(f"{name} not importable: {error!r}", module_level=True)


def shared_file(*parts: str) -> Path:
    """``../shared/data/<parts>``; skips (locally) or fails (``CI=true``) when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        unavailable(f"shared data file not found: {path}")
    return path


def pytest_collection_modifyitems(items):
    """No time limit (pyproject's ``timeout``) on checks marked slow: they are long by
    design, and the limit is the default run's net for a hang."""
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.timeout(0))


@pytest.fixture(scope="session")
def batch():
    """16 real CIFAR-10 images (bundled), augmented deterministically."""
    return zcjax.data.sample_batch("cifar10", 16)


@pytest.fixture(scope="session")
def tiny_batch():
    """8 real 16x16 ImageNet images (bundled), labels folded into TINY's 10 classes."""
    images, labels = zcjax.data.sample_batch("imagenet16-120", 8)
    return images, labels % TINY.num_classes


@pytest.fixture
def key():
    return jax.random.key(0)


def random_variables(network, key):
    """Variables of the network's structure from one uniform draw on [-0.5, 1): values
    unlike the init's (not centred, larger), for checks of the program's algebra."""
    shapes = jax.eval_shape(network.init, key)
    leaves, treedef = jax.tree.flatten(shapes)
    values = jax.random.uniform(key, (sum(leaf.size for leaf in leaves),), minval=-0.5, maxval=1)
    offsets = np.cumsum([0] + [leaf.size for leaf in leaves])
    return jax.tree.unflatten(treedef, [values[a:b].reshape(leaf.shape)
                                        for a, b, leaf in zip(offsets, offsets[1:], leaves)])


def loss_and_grads(network, variables, genotype, images, labels):
    """Mean cross-entropy and its parameter gradients (the spaces' equivalence checks)."""
    def loss(params):
        return cross_entropy(network.apply({"params": params}, genotype, images), labels)

    return jax.value_and_grad(loss)(variables["params"])


def stored_values(out) -> dict:
    """A results store as {(arch, proxy): value}; fails if any row is stored twice."""
    from zcjax import store

    frame = store.read_results(out)
    keys = list(zip(frame["arch"], frame["proxy"]))
    assert len(keys) == len(set(keys)), "a row is stored twice"
    return dict(zip(keys, frame["value"]))


def same_values(a: dict, b: dict) -> bool:
    """Equal keys and values, bit for bit, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)


@pytest.fixture(scope="module")
def module_compilation_cache(tmp_path_factory):
    """A persistent compilation cache for one module, JAX's settings restored after it."""
    previous = (jax.config.jax_compilation_cache_dir,
                jax.config.jax_persistent_cache_min_compile_time_secs)
    path = tmp_path_factory.mktemp("jax-cache")
    zcjax.cache.use_compilation_cache(path)
    yield path
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
    zcjax.cache.compilation_cache.reset_cache()


# The zcjax CLI in a subprocess, on the tiny NB201 config (seconds to compile) and slowed
# to ``seconds`` per architecture, so that a signal or a second writer lands mid-run.
_TINY_CLI = """
import dataclasses, sys, time
sys.path.insert(0, {tests!r})
from conftest import TINY
from zcjax import api, cli

make_scorer = api.make_scorer

def tiny_slow_scorer(space, proxies, **options):
    config = options["config"]
    options["config"] = dataclasses.replace(TINY, num_classes=config.num_classes,
                                            image_size=config.image_size)
    scorer = make_scorer(space, proxies, **options)
    def compiled(*inputs):
        time.sleep({seconds!r})
        return scorer.compiled(*inputs)
    return dataclasses.replace(scorer, compiled=compiled)

api.make_scorer = tiny_slow_scorer
sys.argv = ["zcjax", *{argv!r}]
cli.entry_point()
"""


def start_tiny_cli(argv, log: Path, *, seconds: float = 0.3) -> subprocess.Popen:
    """``zcjax ARGV`` (the console script) on the tiny config; stderr to ``log``."""
    script = _TINY_CLI.format(tests=str(Path(__file__).parent), seconds=seconds,
                              argv=[str(a) for a in argv])
    with open(log, "wb") as stderr:
        return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                                stderr=stderr)


def wait_for_a_part(process: subprocess.Popen, out: Path, log: Path,
                    timeout: float = 240) -> None:
    """Until ``process`` has finished a part file in the store ``out`` (it must not exit)."""
    import time

    from zcjax import store

    deadline = time.monotonic() + timeout
    while not (out.exists() and store.part_files(out)):
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "no part file written in time"
        time.sleep(0.05)


# glibc's malloc_trim (None elsewhere, e.g. on macOS or musl, where nothing is trimmed).
try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None


@pytest.fixture(autouse=True, scope="module")
def _release_memory_after_each_module():
    """After each test file: drop JAX's compiled programs, give freed memory back to the OS.

    Compiling allocates gigabytes for a while, and glibc keeps the pages it freed, so each
    xdist worker stayed at the largest peak of any file it ran (8.9 and 8.4 GB near the
    end of a CI run; a 24 GB CI machine OOM-killed a worker). Measured after
    test_space_conformance.py: 6.4 GB resident before, 1.0 GB after.
    """
    yield
    jax.clear_caches()
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
