"""SWAP against a PyTorch computation written from its definition, on NAS-Bench-201's own
model: xautodl's ``TinyNetwork`` (``cell_infers``) built from the arch string, holding
zcjax's weights (copied through the parity suite's ``torch_nb201`` twin, whose state dict
has the same keys), a forward hook on every ``nn.ReLU`` keeping its output on 4-D inputs,
then the distinct rows of (neurons x samples) signs. The counts must agree exactly on the
parity suite's 21 architectures (degenerate cells included), with BatchNorm in eval mode
at initialisation (zcjax's default ``activation_bn="init"``) and in train mode
(``"batch"``). swap_reg is checked with P counted from the torch model's parameters.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ARCHS, PARITY_INIT_DRAW, SMALL, SMALL_BATCH, init_variables, to_torch,  # noqa: E402
                    torch, torch_model)

import jax  # noqa: E402

import zcjax  # noqa: E402
from conftest import unavailable  # noqa: E402
from zcjax.spaces import nb201  # noqa: E402

MU, SIGMA = 0.05, 0.01  # near SMALL's sizes (tens of thousands of parameters)


@functools.lru_cache(maxsize=None)
def xautodl_classes():
    try:
        from xautodl.models.cell_infers.tiny_network import TinyNetwork
        from xautodl.models.cell_searchs.genotypes import Structure
    except Exception as error:  # noqa: BLE001 - any import failure (e.g. a bad wheel)
        unavailable(f"xautodl not importable: {error!r}")
    return TinyNetwork, Structure


def xautodl_model(arch, params, config=SMALL):
    """NB201's TinyNetwork for ``arch`` (SMALL's size by default), holding zcjax's
    ``params``."""
    TinyNetwork, Structure = xautodl_classes()
    model = TinyNetwork(config.channels[0], config.cells_per_stage,
                        Structure.str2structure(arch), config.num_classes)
    twin = torch_model(arch, config, params)
    model.load_state_dict(twin.state_dict(), strict=True)
    return model


def torch_swap(model, x, samples):
    """The definition: signs of every nn.ReLU output on a 4-D input, (neurons x samples),
    the number of distinct rows."""
    signs = []

    def keep(module, inputs, output):
        if output.dim() == 4:
            signs.append((output[:samples] > 0).reshape(samples, -1).numpy().copy())

    hooks = [m.register_forward_hook(keep) for m in model.modules()
             if isinstance(m, torch.nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    rows = np.concatenate(signs, axis=1).T
    return len(np.unique(rows, axis=0)), len(hooks)


@pytest.fixture(scope="module")
def small_batch():
    return zcjax.data.sample_batch("cifar10", SMALL_BATCH)


@pytest.fixture(scope="module")
def compared(small_batch):
    """{bn mode: [(arch, zcjax swap, torch swap, zcjax swap_reg, torch P)]}."""
    key = jax.random.key(0)
    results = {}
    x, _ = to_torch(small_batch)
    for bn, train in (("init", False), ("batch", True)):
        scorer = zcjax.make_scorer("nb201", ["swap", "swap_reg"], config=SMALL,
                                   init_draw=PARITY_INIT_DRAW, activation_bn=bn,
                                   swap_samples=SMALL_BATCH, swap_mu=MU, swap_sigma=SIGMA)
        params = init_variables(scorer, small_batch, key)["params"]
        rows = []
        for arch in ARCHS:
            out = scorer(nb201.encode(arch), small_batch, key)
            model = xautodl_model(arch, params).train(train)
            reference, hooked = torch_swap(model, x, SMALL_BATCH)
            assert hooked > 0
            count = sum(p.numel() for p in model.parameters())
            rows.append((arch, float(out["swap"]), reference, float(out["swap_reg"]), count))
        results[bn] = rows
    return results


@pytest.mark.parametrize("bn", ("init", "batch"))
def test_swap_equals_pytorch_exactly(compared, bn):
    rows = compared[bn]
    assert len(rows) >= 13
    mismatches = [(arch, ours, theirs) for arch, ours, theirs, _, _ in rows if ours != theirs]
    print(f"\nswap, activation_bn={bn}: {len(rows) - len(mismatches)}/{len(rows)} exact; "
          f"values {[int(r[2]) for r in rows]}")
    assert not mismatches, mismatches


def test_degenerate_cells_are_among_them(compared):
    archs = [row[0] for row in compared["init"]]
    assert "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|" in archs
    assert ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
            "skip_connect~2|") in archs


@pytest.mark.parametrize("bn", ("init", "batch"))
def test_swap_reg_with_the_torch_models_parameter_count(compared, bn):
    for arch, _, reference, regularised, count in compared[bn]:
        assert count == nb201.param_count(arch, SMALL), arch
        expected = reference * np.exp(-(count / 1e6 - MU) ** 2 / SIGMA)
        np.testing.assert_allclose(regularised, expected, rtol=1e-6, err_msg=arch)
