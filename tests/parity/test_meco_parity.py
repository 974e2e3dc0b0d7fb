"""Parity of ``meco`` with the reference's quirks (``meco_input="gaussian"``,
``meco_modules="every"``) against the authors' foresight measure.

The reference is ``get_score`` / ``compute_meco`` of MeCo's foresight measure
(``../shared/reference/meco/meco.py``, MIT: run here, never copied into zcjax), on
xautodl 1.0.0's NB201 ``TinyNetwork`` built for each of the 21 architectures of
``common.ARCHS`` (all-``none`` and all-``skip_connect`` included) at the parity suite's
small size, with zcjax's weights copied in. How it is run:

* the reference's ``from . import measure`` is served by a stand-in package whose
  ``measure`` decorator returns the function unchanged;
* its input ``torch.randn(1, 3, 64, 64)`` is replaced (the module's ``torch.randn``) by
  zcjax's Gaussian image drawn from the key, in NCHW; nothing calls ``.cuda()`` (the
  device is the inputs' device, the CPU here), so nothing else is patched;
* the network returns the logits only: xautodl's ``TinyNetwork`` returns ``(features,
  logits)``, the whole network's hook then takes the pooled features' first row, whose
  0-d correlation makes ``torch.linalg.eig`` raise, and ``compute_meco`` returns
  ``(nan, None)`` for every architecture (:func:`test_the_tuple_output_makes_the_reference_nan`).
  The authors' own NB201 runs use foresight's NB201 model, whose ``forward`` returns the
  logits; here a subclass of xautodl's ``TinyNetwork`` (the same modules) does so.
* BatchNorm in train mode (the measure's ``bn=True`` copy is ``train()``); both sides
  forward the one image.

The reference computes in float32 (its eigenvalues with the general ``torch.linalg.eig``);
zcjax's forward is float32 and its correlations and eigenvalues float64. The scores are
held to 1e-4 relative (``pytest -s`` prints the worst). Also checked: the number of
module calls the reference hooks equals zcjax's term count plus the terms zcjax omits
because they are exactly 0 (the Zero ops, the global pool, the classifier, the network).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ARCHS, SMALL, SMALL_BATCH, relative_error, torch, torch_model  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from conftest import unavailable  # noqa: E402
from zcjax import api  # noqa: E402
from zcjax.proxies import meco, registry  # noqa: E402
from zcjax.proxies import base as proxy_base  # noqa: E402
from zcjax.spaces import nb201  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "meco"
OPTIONS = registry.validate_options(["meco"], {"meco_input": "gaussian",
                                               "meco_modules": "every"})
TOLERANCE = 1e-4
# The reference's corrcoef of one-position maps (the logits) warns; those terms are 0.
pytestmark = pytest.mark.filterwarnings("ignore:cov.*degrees of freedom:UserWarning")


@functools.lru_cache(maxsize=None)
def reference_modules():
    path = REFERENCE / "meco.py"
    if not path.exists():
        unavailable(f"MeCo reference file not found: {path}")
    try:
        from xautodl.models.cell_infers.tiny_network import TinyNetwork
        from xautodl.models.cell_searchs.genotypes import Structure
    except Exception as error:  # noqa: BLE001 - any import failure (e.g. a bad wheel)
        unavailable(f"xautodl not importable: {error!r}")
    package = types.ModuleType("meco_reference")
    package.__path__ = [str(REFERENCE)]
    package.measure = lambda name, **kwargs: (lambda function: function)
    sys.modules["meco_reference"] = package
    spec = importlib.util.spec_from_file_location("meco_reference.meco", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["meco_reference.meco"] = module
    spec.loader.exec_module(module)

    class LogitsTinyNetwork(TinyNetwork):
        """xautodl's TinyNetwork returning the logits only (no module added)."""

        def forward(self, inputs):
            return super().forward(inputs)[1]

    return module, TinyNetwork, LogitsTinyNetwork, Structure


class _TorchWithImage(types.SimpleNamespace):
    """``torch`` for the reference module, whose ``randn`` returns the given image."""

    def __init__(self, image):
        super().__init__()
        self._image = image

    def randn(self, size):
        assert tuple(size) == tuple(self._image.shape), (size, self._image.shape)
        return self._image.clone()

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def reference_patched(module, image):
    saved = module.torch
    module.torch = _TorchWithImage(image)
    try:
        yield
    finally:
        module.torch = saved


def nchw(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array).transpose(0, 3, 1, 2)))


@functools.lru_cache(maxsize=None)
def _runner(config=SMALL):
    network = nb201.network(config)
    resolved = registry.resolve(["meco"])

    def run(variables, genotype, images, labels, key):
        inputs = proxy_base.ProxyInputs(network, variables, genotype, images, labels, key,
                                        OPTIONS)
        terms = meco.meco_terms(inputs)
        score = registry.run(resolved, inputs)["meco"].score
        return score, meco.meco_draws(inputs)[0], sum(t.count for t in terms)

    return network, jax.jit(run)


def zcjax_side(arch, key, config=SMALL, batch_size=SMALL_BATCH):
    network, run = _runner(config)
    with jax.enable_x64(True):
        variables = network.init(api.init_key(key))
        images = jnp.zeros((batch_size, config.image_size, config.image_size, 3), jnp.float32)
        labels = jnp.zeros(batch_size, jnp.int32)
        score, image, count = run(variables, jnp.asarray(nb201.encode(arch)), images, labels,
                                  api.noise_key(key))
        return float(score), np.asarray(image), int(count), variables


def reference_model(arch, variables, cls, config=SMALL):
    _, _, _, structure = reference_modules()
    ours = torch_model(arch, config, variables["params"])
    model = cls(config.channels[0], config.cells_per_stage, structure.str2structure(arch),
                config.num_classes)
    model.load_state_dict(ours.state_dict())
    return model.train()


def reference_side(arch, variables, image, cls=None, config=SMALL):
    module, _, logits_network, _ = reference_modules()
    model = reference_model(arch, variables, cls or logits_network, config)
    calls = []
    for submodule in model.modules():
        submodule.register_forward_hook(lambda *_: calls.append(1))
    x = nchw(image)
    with reference_patched(module, x):
        value = module.compute_meco(model, torch.zeros(1), None)
    return value, len(calls)


@pytest.fixture(scope="module")
def results():
    key = jax.random.key(0)
    rows = []
    for arch in ARCHS:
        ours, image, count, variables = zcjax_side(arch, key)
        theirs, calls = reference_side(arch, variables, image)
        rows.append((arch, ours, theirs, count, calls))
    return rows


def test_reference_matches_on_every_architecture(results):
    assert len(results) >= 13
    worst = 0.0
    for arch, ours, theirs, _, _ in results:
        assert np.isfinite(theirs), (arch, theirs)
        worst = max(worst, relative_error(ours, theirs))
        assert np.isclose(ours, theirs, rtol=TOLERANCE, atol=0), (arch, ours, theirs)
    print(f"\nmeco (gaussian, every) parity: max relative error {worst:.2e} over "
          f"{len(results)} architectures")


def test_every_hooked_module_call_is_a_term(results):
    """Reference hook calls = zcjax's counted terms + the exact zeros zcjax omits: one
    Zero module per ``none`` edge of each cell, the global pool, the classifier and the
    network itself."""
    cells = SMALL.cells_per_stage * len(SMALL.channels)
    for arch, _, _, count, calls in results:
        nones = arch.count("none~")
        assert calls == count + nones * cells + 3, (arch, calls, count)


def test_the_tuple_output_makes_the_reference_nan():
    """On xautodl's TinyNetwork as it is, which returns (features, logits), the
    reference's whole-network hook raises and compute_meco returns (nan, None)."""
    _, tiny_network, _, _ = reference_modules()
    arch = ARCHS[6]
    _, image, _, variables = zcjax_side(arch, jax.random.key(0))
    value, _ = reference_side(arch, variables, image, tiny_network)
    assert isinstance(value, tuple) and np.isnan(value[0]) and value[1] is None
