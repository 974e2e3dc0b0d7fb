"""A PyTorch DARTS / NAS-Bench-301 network, for parity tests of zcjax's darts.

Written from the DARTS paper's evaluation network (Liu et al., ICLR 2019; quark0/darts
``cnn/model.py`` ``NetworkCIFAR`` and ``cnn/operations.py``, the network NAS-Bench-301
trained), not from zcjax; without auxiliary head and drop path:

* stem: Conv3x3(3 -> 3C, no bias) - BN; ``s0 = s1 = stem(x)``;
* ``layers`` cells, reduce cells (C doubled) at ``layers // 3`` and ``2 * layers // 3``;
  a cell preprocesses s0 with FactorizedReduce after a reduce cell, else ReLU - Conv1x1 -
  BN, and s1 with ReLU - Conv1x1 - BN, to C channels; node j sums two ops of earlier
  states; in a reduce cell an op reading a cell input has stride 2; the output
  concatenates the four nodes;
* ops: 3x3 pools with padding 1 (average without the padding), ``skip_connect`` identity
  or FactorizedReduce (ReLU, two stride-2 1x1 convs, the second on the input shifted by
  one pixel, concatenated, BN), ``sep_conv_kxk`` = (ReLU - depthwise kxk - pointwise 1x1 -
  BN) twice, the first with the stride, ``dil_conv_kxk`` = ReLU - depthwise kxk dilation 2 -
  pointwise - BN;
* head: global average pool - Linear (``forward`` returns the pooled features and the
  logits, the pair alethiometer's proxies unpack).

``affine=False, pool_bn=True`` builds the graph NASLib scored NAS-Bench-Suite-Zero's NB301
proxies on: the cell ops' BatchNorms without affine parameters, and a non-affine
BatchNorm after every pool (the preprocessing keeps its affine BatchNorms).

Only the chosen op of each slot is built, in slot order; every ReLU is its own ``nn.ReLU``
inside its op (as DARTS' modules, so a hook on "ReLU"-named classes sees what DARTS'
network shows it). BatchNorm runs in train mode (batch statistics).

``load_zcjax_params`` copies a zcjax darts parameter tree into the model.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from common import copy_weight

OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
       "dil_conv_3x3", "dil_conv_5x5")  # NASLib's compact op indices


def parse_arch(arch: str) -> list[list[tuple[int, str]]]:
    """NASLib's compact string ``"[[(input, op) x 8], [(input, op) x 8]]"`` -> per cell type
    (normal, reduce) the 8 (input, op name) slots (node ``slot // 2``)."""
    cells = ast.literal_eval(arch)
    return [[(int(source), OPS[int(op)]) for source, op in cell] for cell in cells]


class ReLUConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False),
                                nn.BatchNorm2d(c_out))

    def forward(self, x):
        return self.op(x)


class FactorizedReduce(nn.Module):
    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class SepConv(nn.Module):
    def __init__(self, c: int, kernel: int, stride: int, affine: bool):
        super().__init__()
        padding = kernel // 2
        self.op = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, kernel, stride, padding, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, affine=affine),
            nn.ReLU(), nn.Conv2d(c, c, kernel, 1, padding, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, affine=affine))

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    def __init__(self, c: int, kernel: int, stride: int, affine: bool):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, kernel, stride, kernel - 1, dilation=2, groups=c,
                                 bias=False),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, affine=affine))

    def forward(self, x):
        return self.op(x)


class Pool(nn.Module):
    def __init__(self, pool: nn.Module, c: int, batch_norm: bool):
        super().__init__()
        self.pool = pool
        self.bn = nn.BatchNorm2d(c, affine=False) if batch_norm else nn.Identity()

    def forward(self, x):
        return self.bn(self.pool(x))


def make_op(name: str, c: int, stride: int, affine: bool, pool_bn: bool) -> nn.Module:
    if name == "max_pool_3x3":
        return Pool(nn.MaxPool2d(3, stride, 1), c, pool_bn)
    if name == "avg_pool_3x3":
        return Pool(nn.AvgPool2d(3, stride, 1, count_include_pad=False), c, pool_bn)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    kind, size = name.rsplit("_", 1)
    kernel = int(size.split("x")[0])
    return (SepConv if kind == "sep_conv" else DilConv)(c, kernel, stride, affine)


class Cell(nn.Module):
    def __init__(self, slots, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool, affine: bool, pool_bn: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c))
        self.preprocess1 = ReLUConvBN(c_prev, c)
        self.indices = [source for source, _ in slots]
        self.ops = nn.ModuleList(
            make_op(name, c, 2 if reduction and source < 2 else 1, affine, pool_bn)
            for source, name in slots)

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(len(self.ops) // 2):
            states.append(sum(self.ops[slot](states[self.indices[slot]])
                              for slot in (2 * node, 2 * node + 1)))
        return torch.cat(states[2:], dim=1)


class NetworkCIFAR(nn.Module):
    def __init__(self, arch: str, channels: int, layers: int, num_classes: int,
                 stem_multiplier: int = 3, affine: bool = True, pool_bn: bool = False):
        super().__init__()
        normal, reduce = parse_arch(arch)
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for index in range(layers):
            reduction = index in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(Cell(reduce if reduction else normal, c_prev_prev, c_prev, c_curr,
                                   reduction, reduction_prev, affine, pool_bn))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, 4 * c_curr
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x):
        """``(pooled features, logits)``: the pair alethiometer's proxies unpack."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        features = s1.mean(dim=(2, 3))
        return features, self.classifier(features)


def _bn(module: nn.BatchNorm2d, params: Mapping | None) -> None:
    if module.affine:
        copy_weight(module.weight, params["scale"])
        copy_weight(module.bias, params["bias"])


def _factorized(module: FactorizedReduce, a, b, bn) -> None:
    copy_weight(module.conv_1.weight, a["kernel"])
    copy_weight(module.conv_2.weight, b["kernel"])
    _bn(module.bn, bn)


def _op(module: nn.Module, params: Mapping) -> None:
    """One slot's chosen op from zcjax's per-slot params (``sep3_dw1``, ``dil5_pw``, ...)."""
    if isinstance(module, FactorizedReduce):
        _factorized(module, params["factorized_a"], params["factorized_b"],
                    params.get("bn_factorized"))
    elif isinstance(module, SepConv):
        prefix = f"sep{module.op[1].kernel_size[0]}"
        copy_weight(module.op[1].weight, params[f"{prefix}_dw1"]["kernel"])
        copy_weight(module.op[2].weight, params[f"{prefix}_pw1"]["kernel"])
        _bn(module.op[3], params.get(f"{prefix}_bn1"))
        copy_weight(module.op[5].weight, params[f"{prefix}_dw2"]["kernel"])
        copy_weight(module.op[6].weight, params[f"{prefix}_pw2"]["kernel"])
        _bn(module.op[7], params.get(f"{prefix}_bn2"))
    elif isinstance(module, DilConv):
        prefix = f"dil{module.op[1].kernel_size[0]}"
        copy_weight(module.op[1].weight, params[f"{prefix}_dw"]["kernel"])
        copy_weight(module.op[2].weight, params[f"{prefix}_pw"]["kernel"])
        _bn(module.op[3], params.get(f"{prefix}_bn"))


def load_zcjax_params(model: NetworkCIFAR, params: Mapping) -> NetworkCIFAR:
    """Copy zcjax's darts ``params`` (every slot holds every op's weights, stacked on a
    leading slot axis) into ``model``'s chosen ops."""
    copy_weight(model.stem[0].weight, params["stem"]["conv"]["kernel"])
    _bn(model.stem[1], params["stem"]["bn"])
    for index, cell in enumerate(model.cells):
        cell_params = params[f"cell{index}"]
        for name in ("preprocess0", "preprocess1"):
            module, p = getattr(cell, name), cell_params[name]
            if isinstance(module, FactorizedReduce):
                _factorized(module, p["factorized_a"], p["factorized_b"], p["bn"])
            else:
                copy_weight(module.op[1].weight, p["conv"]["kernel"])
                _bn(module.op[2], p["bn"])
        for slot, op in enumerate(cell.ops):
            _op(op, slot_params(cell_params["slots"], slot))
    copy_weight(model.classifier.weight, params["classifier"]["kernel"])
    copy_weight(model.classifier.bias, params["classifier"]["bias"])
    return model


def slot_params(tree: Mapping, index: int) -> dict:
    """``tree`` (nested dicts of arrays with a leading slot axis) at one slot."""
    return {key: slot_params(value, index) if isinstance(value, Mapping)
            else np.asarray(value)[index] for key, value in tree.items()}
