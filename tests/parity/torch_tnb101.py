"""A PyTorch TransNAS-Bench-101 micro network, for parity tests of zcjax's tnb101_micro.

Written from the benchmark's definition (Duan et al., CVPR 2021; github.com/yawen-d/
TransNASBench, ``MacroNet`` with ``structure='full'`` and ``MicroCell``), not from zcjax:

* stem: Conv3x3(3 -> C/2, stride 2, no bias) - BN, then ReLU - Conv3x3(C/2 -> C, stride 2)
  - BN;
* one layer per macro digit, two cells each (type 2/4 doubles the channels, 3/4 halve the
  resolution, both in the layer's first cell); a cell is NB201's four-node DAG where the
  three edges leaving its input map C_in -> C_out with the layer's stride: ``none`` gives
  zeros of the output's shape, ``skip_connect`` is FactorizedReduce (ReLU, two 1x1 convs,
  the second on the input shifted by one pixel, concatenated, BN) unless stride 1 and
  C_in == C_out, and a conv is ReLU - Conv(no bias) - BN;
* head: global average pool - Linear (``forward`` returns the pooled features and the
  logits, the pair alethiometer's proxies unpack).

Only the chosen op of each edge is built, in the cell's edge order, every ReLU its own
``nn.ReLU`` inside its ReLUConvBN / FactorizedReduce (as the benchmark's modules, so a
NASWOT hook on "ReLU"-named classes sees what the benchmark's network shows it). BatchNorm
runs in train mode: batch statistics, as zcjax's stateless BatchNorm.

``load_zcjax_params`` copies a zcjax tnb101_micro parameter tree into the model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from common import copy_weight

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")  # the benchmark's codes 0-3
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), arch-string order


def parse_arch(arch: str) -> list[str]:
    ops = [entry.split("~")[0] for node in arch.split("+") for entry in node.split("|") if entry]
    if len(ops) != len(EDGES) or set(ops) - set(OPS):
        raise ValueError(f"malformed TNB101 micro arch {arch!r}")
    return ops


class Zero(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x):
        if self.c_in == self.c_out:
            return x[:, :, ::self.stride, ::self.stride].mul(0.0)
        n, _, h, w = x.shape
        return x.new_zeros((n, self.c_out, (h + 1) // self.stride, (w + 1) // self.stride))


class ReLUConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.ops = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride,
                                                      kernel // 2, bias=False),
                                 nn.BatchNorm2d(c_out))

    def forward(self, x):
        return self.ops(x)


class FactorizedReduce(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.relu = nn.ReLU()
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out // 2, 1, stride, 0, bias=False)
                                   for _ in range(2))
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = self.relu(x)
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.convs[0](x), self.convs[1](shifted)], dim=1))


class Identity(nn.Module):
    def forward(self, x):
        return x


def edge_op(op: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    if op == "none":
        return Zero(c_in, c_out, stride)
    if op == "skip_connect":
        return Identity() if stride == 1 and c_in == c_out else FactorizedReduce(c_in, c_out,
                                                                               stride)
    return ReLUConvBN(c_in, c_out, 1 if op == "nor_conv_1x1" else 3, stride)


class MicroCell(nn.Module):
    def __init__(self, ops: list[str], c_in: int, c_out: int, stride: int):
        super().__init__()
        self.edges = nn.ModuleList(
            edge_op(op, c_in if source == 0 else c_out, c_out, stride if source == 0 else 1)
            for op, (_, source) in zip(ops, EDGES))

    def forward(self, x):
        nodes = [x]
        for node in (1, 2, 3):
            nodes.append(sum(self.edges[index](nodes[source])
                             for index, (to, source) in enumerate(EDGES) if to == node))
        return nodes[-1]


class MacroNet(nn.Module):
    def __init__(self, arch: str, base_channels: int, macro: str, cells_per_layer: int,
                 num_classes: int):
        super().__init__()
        ops = parse_arch(arch)
        self.stem = nn.Sequential(
            nn.Conv2d(3, base_channels // 2, 3, 2, 1, bias=False),
            nn.BatchNorm2d(base_channels // 2),
            ReLUConvBN(base_channels // 2, base_channels, 3, 2))
        layers, channels = [], base_channels
        for kind in (int(digit) for digit in macro):
            out = channels * 2 if kind % 2 == 0 else channels
            stride = 2 if kind > 2 else 1
            cells = [MicroCell(ops, channels, out, stride)]
            cells += [MicroCell(ops, out, out, 1) for _ in range(1, cells_per_layer)]
            layers.append(nn.Sequential(*cells))
            channels = out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        """``(pooled features, logits)``: the pair alethiometer's proxies unpack."""
        features = self.layers(self.stem(x)).mean(dim=(2, 3))
        return features, self.head(features)


def _bn(module: nn.BatchNorm2d, params: Mapping) -> None:
    copy_weight(module.weight, params["scale"])
    copy_weight(module.bias, params["bias"])


def _edge(module: nn.Module, params: Mapping) -> None:
    if isinstance(module, ReLUConvBN):
        size = module.ops[1].kernel_size[0]
        copy_weight(module.ops[1].weight, params[f"conv{size}x{size}"]["kernel"])
        _bn(module.ops[2], params[f"bn{size}x{size}"])
    elif isinstance(module, FactorizedReduce):
        copy_weight(module.convs[0].weight, params["factorized_a"]["kernel"])
        copy_weight(module.convs[1].weight, params["factorized_b"]["kernel"])
        _bn(module.bn, params["bn_factorized"])


def load_zcjax_params(model: MacroNet, params: Mapping) -> MacroNet:
    """Copy zcjax's tnb101_micro ``params`` (the chosen ops' weights) into ``model``.

    zcjax names a layer's first cell ``layer<i>_reduction`` when it changes channels or
    resolution, and stacks the parameters of the remaining cells (``layer<i>_cells``,
    leading axis = cell).
    """
    copy_weight(model.stem[0].weight, params["stem_0"]["conv"]["kernel"])
    _bn(model.stem[1], params["stem_0"]["bn"])
    copy_weight(model.stem[2].ops[1].weight, params["stem_1"]["conv"]["kernel"])
    _bn(model.stem[2].ops[2], params["stem_1"]["bn"])
    edge_names = [f"edge_{to}_{source}" for to, source in EDGES]
    for index, layer in enumerate(model.layers):
        cells = list(layer)
        if f"layer{index}_reduction" in params:
            first = params[f"layer{index}_reduction"]
            for module, name in zip(cells[0].edges, edge_names):
                _edge(module, first[name])
            cells = cells[1:]
        for position, cell in enumerate(cells):
            stacked = params[f"layer{index}_cells"]
            for module, name in zip(cell.edges, edge_names):
                _edge(module, {op: {k: v[position] for k, v in leaves.items()}
                               for op, leaves in stacked[name].items()})
    copy_weight(model.head.weight, params["classifier"]["kernel"])
    copy_weight(model.head.bias, params["classifier"]["bias"])
    return model
