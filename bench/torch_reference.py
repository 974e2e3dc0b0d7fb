"""The PyTorch reference the benchmarks time zcjax against, proxy by proxy.

alethiometer 1.1.2 (the paper's toolkit, vendoring foresight) for what it covers:
grad_norm, snip, grasp, synflow, naswot (``nwot_relu``), T-CET(SNIP) (``tcet_snip_none``),
zico; foresight-equivalent code for fisher, plain and jacob_cov, which alethiometer does
not ship. Like foresight, every proxy deep-copies the model and runs its own passes.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "parity"))
from common import aleth  # noqa: E402  (alethiometer without its torchvision __init__)
import torch_nb201  # noqa: E402

ALETHIOMETER = {"grad_norm": "grad_norm", "snip": "snip", "grasp": "grasp",
                "synflow": "synflow", "naswot": "nwot_relu", "tcet_snip": "tcet_snip_none",
                "zico": "zico"}


def _layers(model):
    return [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def fisher(model, x, y) -> float:
    net = copy.deepcopy(model).train()
    outputs = {}

    def keep(module, inputs, output):
        output.retain_grad()
        outputs[module] = output

    handles = [layer.register_forward_hook(keep) for layer in _layers(net)]
    _, logits = net(x)
    F.cross_entropy(logits, y).backward()
    for handle in handles:
        handle.remove()
    total = 0.0
    for layer, output in outputs.items():
        if output.grad is None:
            continue
        per_sample = output.detach() * output.grad
        if per_sample.dim() > 2:
            per_sample = per_sample.sum(dim=(2, 3))
        total += float(0.5 * per_sample.pow(2).mean(0).sum()) * int(np.prod(layer.weight.shape[1:]))
    return total


def plain(model, x, y) -> float:
    net = copy.deepcopy(model).train()
    _, logits = net(x)
    F.cross_entropy(logits, y).backward()
    return float(sum((layer.weight * layer.weight.grad).sum() for layer in _layers(net)
                     if layer.weight.grad is not None))


def jacob_cov(model, x, y) -> float:
    net = copy.deepcopy(model).train()
    inputs = x.clone().requires_grad_(True)
    _, logits = net(inputs)
    logits.backward(torch.ones_like(logits))
    jacobian = inputs.grad.detach().reshape(x.shape[0], -1).numpy()
    try:
        eigenvalues, _ = np.linalg.eig(np.corrcoef(jacobian))
        return float(np.real(-np.sum(np.log(eigenvalues + 1e-5) + 1.0 / (eigenvalues + 1e-5))))
    except np.linalg.LinAlgError:
        return float("nan")


def l2_norm(model, x, y) -> float:
    return float(sum(layer.weight.norm() for layer in _layers(model)))


FORESIGHT = {"fisher": fisher, "plain": plain, "jacob_cov": jacob_cov, "l2_norm": l2_norm}
COVERED = tuple(ALETHIOMETER) + tuple(FORESIGHT)


def score(proxies, model, x, y) -> dict[str, float]:
    """Each proxy on its own copy of ``model`` (params/flops are not timed: zcjax computes
    them from the genotype, the references from the module)."""
    results = {}
    for name in proxies:
        if name in ALETHIOMETER:
            value = aleth.calc_zc_metrics([ALETHIOMETER[name]], model, [(x, y)],
                                          torch.device("cpu"))[ALETHIOMETER[name]]
            results[name] = float(value)
        elif name in FORESIGHT:
            results[name] = FORESIGHT[name](model, x, y)
    return results


def model_for(arch: str, config) -> torch.nn.Module:
    return torch_nb201.TinyNetwork(arch, config.channels, config.cells_per_stage,
                                   config.num_classes).train()
