"""Parity of AZ-NAS's expressivity, progressivity and trainability with the authors' code.

The reference is ``compute_nas_score`` of AZ-NAS's NB201 code
(``../shared/reference/az_nas``, GPL-3.0: run here, never copied into zcjax) on its own
``TinyNetwork`` (``tss_model.py``, built from xautodl 1.0.0's NB201 cells), on the 21
architectures of ``common.ARCHS`` (degenerate ones included) at the parity suite's small
size. Both sides see the same numbers:

* weights: zcjax's Kaiming-normal re-draw (``sota_init``), copied into the reference
  network; the reference's own ``init_model`` is replaced by the identity for the call;
* input: zcjax's Gaussian batch, passed as the reference's ``trainloader``;
* trainability's random signs: zcjax's, handed to the reference in place of its
  ``torch.bernoulli`` draws (which it makes from the last block backwards);
* ``.cuda()``: the reference calls ``model.cuda()``; it is patched to the identity
  (``torch.nn.Module.cuda``), as this CPU has no GPU.

The reference computes in float32 throughout; zcjax's forward is float32 and its
eigenvalues and gradient products float64. Measured deviations (``pytest -s`` prints
them) are held to 1e-4 relative for expressivity and trainability. Progressivity is a
difference of two entropies, so its relative error is that of the entropies scaled by
|H_k| / |H_{k+1} - H_k|: it is held to 1e-4 relative to the entropy scale (the sum of
|H| of the two maps), and reported plainly. The reference turns a NaN into -inf (the
all-``none`` cell's zero features); zcjax keeps NaN (ranked last, like -inf): the test
requires both to be non-finite there.
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
from zcjax.proxies import az_nas, registry  # noqa: E402
from zcjax.proxies import base as proxy_base  # noqa: E402
from zcjax.spaces import nb201  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "az_nas"
COMPONENTS = ("az_expressivity", "az_progressivity", "az_trainability")
OPTIONS = registry.validate_options(COMPONENTS, {})
TOLERANCE = 1e-4


def _load(name: str, path: Path):
    if not path.exists():
        unavailable(f"AZ-NAS reference file not found: {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def reference_modules():
    try:
        from xautodl.models.cell_searchs.genotypes import Structure
    except Exception as error:  # noqa: BLE001 - any import failure (e.g. a bad wheel)
        unavailable(f"xautodl not importable: {error!r}")
    score = _load("az_nas_reference_score", REFERENCE / "compute_az_nas_score.py")
    model = _load("az_nas_reference_model", REFERENCE / "tss_model.py")
    return score, model, Structure


class _TorchWithSigns(types.SimpleNamespace):
    """``torch`` for the reference module, whose ``bernoulli`` returns the given draws."""

    def __init__(self, draws):
        super().__init__()
        self._draws = list(draws)

    def bernoulli(self, probabilities):
        draw = self._draws.pop(0)
        assert draw.shape == probabilities.shape, (draw.shape, probabilities.shape)
        return draw.clone()

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def reference_patched(module, signs):
    """The reference with zcjax's signs, no re-initialisation, ``.cuda()`` as identity."""
    saved = module.torch, module.init_model, torch.nn.Module.cuda
    module.torch = _TorchWithSigns(signs)
    module.init_model = lambda model, method="kaiming_norm_fanin": model
    torch.nn.Module.cuda = lambda self, device=None: self
    try:
        yield
    finally:
        module.torch, module.init_model, torch.nn.Module.cuda = saved


def nchw(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array).transpose(0, 3, 1, 2)))


@functools.lru_cache(maxsize=None)
def _runner(config=SMALL):
    network = nb201.network(config)
    resolved = registry.resolve(COMPONENTS)

    def run(variables, genotype, images, labels, key):
        inputs = proxy_base.ProxyInputs(network, variables, genotype, images, labels, key,
                                        OPTIONS)
        outputs = registry.run(resolved, inputs)
        draws = az_nas.az_draws(inputs)
        features = az_nas.az_features(inputs)
        entropies = az_nas.block_entropies(inputs, {"az_features": features})
        return ({name: out.score for name, out in outputs.items()}, draws[:2],
                features.output_grads, entropies)

    return network, jax.jit(run)


def zcjax_side(arch, key, config=SMALL, batch_size=SMALL_BATCH):
    network, run = _runner(config)
    with jax.enable_x64(True):
        variables = network.init(api.init_key(key))
        images = jnp.zeros((batch_size, config.image_size, config.image_size, 3), jnp.float32)
        labels = jnp.zeros(batch_size, jnp.int32)
        outputs = run(variables, jnp.asarray(nb201.encode(arch)), images, labels,
                      api.noise_key(key))
        return jax.tree.map(np.asarray, outputs)


def reference_side(arch, variables, images, signs, config=SMALL):
    score_module, model_module, structure = reference_modules()
    ours = torch_model(arch, config, variables["params"])
    model = model_module.TinyNetwork(config.channels[0], config.cells_per_stage,
                                     structure.str2structure(arch), config.num_classes)
    model.load_state_dict(ours.state_dict())
    x = nchw(images)
    # The reference draws the signs from the last block backwards, as +-1 = 2 b - 1.
    bernoulli = [(nchw(g) + 1) / 2 for g in reversed(signs)]
    with reference_patched(score_module, bernoulli):
        info = score_module.compute_nas_score(model, None, [(x, None)], config.image_size,
                                              len(x))
    return {name: info[name.removeprefix("az_")] for name in COMPONENTS}, model, x


def reference_entropies(model, x) -> np.ndarray:
    """The reference's per-map expressivity, from its own features (for the report)."""
    with torch.no_grad():
        features = model.extract_cell_features(x)
    values = []
    for feature in features:
        b, c, h, w = feature.shape
        rows = feature.permute(0, 2, 3, 1).reshape(b * h * w, c)
        rows = rows - rows.mean(dim=0, keepdim=True)
        s = torch.linalg.eigvalsh(rows.T @ rows / rows.shape[0])
        p = s / s.sum()
        values.append(float((-p * torch.log(p + 1e-8)).sum()))
    return np.asarray(values)


@pytest.fixture(scope="module")
def results():
    key = jax.random.key(0)
    rows = []
    for arch in ARCHS:
        ours, (variables, images), signs, entropies = zcjax_side(arch, key)
        theirs, model, x = reference_side(arch, variables, images, signs)
        rows.append((arch, ours, theirs, entropies, reference_entropies(model, x)))
    return rows


def _agree(ours: float, theirs: float) -> bool:
    return (not np.isfinite(ours) and not np.isfinite(theirs)) or np.isclose(
        ours, theirs, rtol=TOLERANCE, atol=0)


def test_reference_matches_on_every_architecture(results):
    worst = {name: 0.0 for name in COMPONENTS}
    for arch, ours, theirs, _, _ in results:
        for name in ("az_expressivity", "az_trainability"):
            if np.isfinite(ours[name]) or np.isfinite(theirs[name]):
                worst[name] = max(worst[name], relative_error(ours[name], theirs[name]))
            assert _agree(float(ours[name]), theirs[name]), (arch, name, ours[name], theirs[name])
    print("\nAZ-NAS parity, max relative error over", len(results), "architectures:", worst)
    assert len(results) >= 13


def test_progressivity_matches_on_the_entropy_scale(results):
    worst_relative, worst_scaled = 0.0, 0.0
    for arch, ours, theirs, entropies, _ in results:
        value, expected = float(ours["az_progressivity"]), theirs["az_progressivity"]
        if not np.isfinite(expected):
            assert not np.isfinite(value), (arch, value, expected)
            continue
        step = int(np.argmin(entropies[1:] - entropies[:-1]))
        scale = abs(entropies[step]) + abs(entropies[step + 1])
        worst_scaled = max(worst_scaled, abs(value - expected) / scale)
        worst_relative = max(worst_relative, relative_error(value, expected))
        assert abs(value - expected) <= TOLERANCE * scale, (arch, value, expected, scale)
    print(f"\naz_progressivity: max relative error {worst_relative:.2e}, "
          f"relative to the entropy scale {worst_scaled:.2e}")


def test_per_map_entropies_match(results):
    """The 1 + 5 maps of the small network, one by one (what the sums are made of)."""
    for arch, _, _, ours, theirs in results:
        assert ours.shape == theirs.shape == (len(nb201.network(SMALL).blocks),)
        finite = np.isfinite(theirs)
        assert np.array_equal(finite, np.isfinite(ours)), (arch, ours, theirs)
        np.testing.assert_allclose(ours[finite], theirs[finite], rtol=TOLERANCE, atol=1e-6,
                                   err_msg=arch)


def test_the_identity_cell_scores_minus_infinity(results):
    """A cell whose only path is a skip (3 <- 0) is the identity: trainability -inf on
    both sides, the degenerate case the reference singles out."""
    identity = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    ours, _, signs, _ = zcjax_side(identity, jax.random.key(0))
    assert float(ours["az_trainability"]) == -np.inf
