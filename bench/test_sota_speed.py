"""Speed of the later proxies (AZ-NAS, MeCo, VKDNW, SWAP) next to their authors' PyTorch
code, per NB201 architecture at the benchmark size (C = 16, N = 5, batch 64), in one run.

  python -m pytest bench/test_sota_speed.py --benchmark-only \
      --benchmark-json bench/cpu/sota_speed.json
  python bench/summarize.py bench/cpu/sota_speed.json

Strategies per proxy set:

* ``compiled_once``: ``zcjax.make_scorer`` on the space, one compilation for every
  architecture; rounds time one architecture after warm-up (the compilation and first
  call are in ``extra_info``);
* ``pytorch``: the authors' own file from ``../shared/reference`` (loaded as the parity
  tests load it, ``.cuda()`` patched to the identity), on the model class the parity tests
  give it, ``torch.set_num_threads`` = the cores (VKDNW's with the parity tests' patch
  that lets torch 2.x run it). Both sides re-draw the weights and draw
  their own Gaussian batch, as the authors' NB201 evaluation does. SWAP's authors' code has
  no licence and is not in ``../shared/reference``; its ``pytorch`` row is the
  independent torch check of tests/parity/test_swap_parity.py, not the authors' code.

Not part of the test suite (``bench/`` is outside ``testpaths``).
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import zcjax
from zcjax.spaces import nb201

from strategies import record, time_compiled_once  # bench/

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "parity")]

CONFIG = nb201.Config()
BATCH_SIZE = 64
ARCHS = 8
SAMPLE = nb201.sample(jax.random.key(0), ARCHS)
BATCH = zcjax.data.sample_batch("cifar10", BATCH_SIZE)
KEY = jax.random.key(0)
PROXY_SETS = {
    "az_nas": ("az_expressivity", "az_progressivity", "az_trainability"),
    "meco": ("meco",),
    "vkdnw": ("vkdnw", "vkdnw_dim"),
    "swap": ("swap",),
}


def _info(benchmark, proxy_set, strategy, **extra):
    record(benchmark, proxy_set, strategy, batch_size=BATCH_SIZE, smoke=False, **extra)


@pytest.mark.parametrize("proxy_set", list(PROXY_SETS))
def test_compiled_once(benchmark, proxy_set):
    scorer = zcjax.make_scorer("nb201", PROXY_SETS[proxy_set], config=CONFIG)
    timing = time_compiled_once(benchmark, scorer, SAMPLE, BATCH, KEY)
    _info(benchmark, proxy_set, "compiled_once", **timing)


def _no_cuda():
    torch.nn.Module.cuda = lambda self, device=None: self
    torch.cuda.empty_cache = lambda: None


def _az_nas_reference():
    import test_az_nas_parity as parity

    score, model_module, structure = parity.reference_modules()
    models = [model_module.TinyNetwork(16, 5, structure.str2structure(arch), 10)
              for arch in nb201.arch_strings(SAMPLE)]
    return lambda model: score.compute_nas_score(model, None, None, 32, BATCH_SIZE), models


def _meco_reference():
    import test_meco_parity as parity

    module, _, logits_network, structure = parity.reference_modules()
    models = [logits_network(16, 5, structure.str2structure(arch), 10)
              for arch in nb201.arch_strings(SAMPLE)]
    images = torch.from_numpy(np.ascontiguousarray(np.asarray(BATCH[0]).transpose(0, 3, 1, 2)))
    return lambda model: module.compute_meco(model, images, None), models


def _vkdnw_reference():
    import common
    import test_vkdnw_parity as parity

    module = parity.reference_module()
    network = nb201.network(CONFIG)
    models = [common.torch_model(arch, CONFIG, network.init(KEY)["params"])
              for arch in nb201.arch_strings(SAMPLE)]

    def score(model):
        # The parity tests' patch: a detach that copies, without which torch 2.x refuses
        # the reference's in-place write under its functional Jacobian (and no re-init:
        # a negligible share of the time).
        with parity.reference_patched(module, torch.float32):
            # zcjax's defaults (vkdnw_tensors=128, vkdnw_entries=1); the file's p=0 takes none.
            return module.compute_nas_score(model, None, None, 32, BATCH_SIZE,
                                            params_grad_len=128, p=1)

    return score, models


def _swap_torch_check():
    import test_swap_parity as parity

    tiny_network, structure = parity.xautodl_classes()
    models = [tiny_network(16, 5, structure.str2structure(arch), 10)
              for arch in nb201.arch_strings(SAMPLE)]
    images = torch.from_numpy(np.ascontiguousarray(np.asarray(BATCH[0]).transpose(0, 3, 1, 2)))
    return lambda model: parity.torch_swap(model, images, 16), models


REFERENCES = {"az_nas": _az_nas_reference, "meco": _meco_reference,
              "vkdnw": _vkdnw_reference, "swap": _swap_torch_check}


@pytest.mark.parametrize("proxy_set", list(PROXY_SETS))
def test_pytorch(benchmark, proxy_set):
    torch.set_num_threads(os.cpu_count() or 1)
    _no_cuda()
    score, models = REFERENCES[proxy_set]()
    cycle = itertools.cycle(models)
    benchmark.pedantic(lambda: score(next(cycle)), rounds=ARCHS, iterations=1,
                       warmup_rounds=1)
    _info(benchmark, proxy_set, "pytorch", threads=torch.get_num_threads(),
          authors_code=proxy_set != "swap")
