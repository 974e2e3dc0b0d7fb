"""A PyTorch NAS-Bench-101 network, for parity tests of zcjax's nb101.

Written from the benchmark's definition (Ying et al., ICML 2019; google-research/nasbench
``lib/model_spec.py`` and ``lib/model_builder.py``, the network every NB101 accuracy was
trained on), not from zcjax:

* the spec is pruned first (``ModelSpec._prune``): vertices not on an input -> output path
  are dropped;
* stem: Conv3x3(3 -> C) - BN - ReLU; ``stacks`` stacks of ``cells_per_stack`` cells, a 2x2
  max-pool (stride 2) and channel doubling before every stack but the first; head: global
  average pool - Linear;
* a cell (``build_module``): vertex channels from ``compute_vertex_channels``; the input
  reaches vertex t through its own 1x1 Conv-BN-ReLU projection when ``matrix[0, t]``; an
  interior edge passes the tensor truncated to the receiving vertex's channels; a vertex
  sums its inputs and applies its op (Conv3x3/Conv1x1-BN-ReLU, or a 3x3 stride-1 max-pool);
  the output concatenates the vertices feeding it and adds the input's projection when
  ``matrix[0, -1]`` (or is that projection alone).

Convs have no bias; BatchNorm runs in train mode (batch statistics, eps 1e-5). Every ReLU
is its own ``nn.ReLU`` inside a ``ConvBnRelu`` (as in the PyTorch ports NASLib and
foresight use), so alethiometer's hook on "ReLU"-named classes sees one ReLU per conv.
Modules are registered as the benchmark builds them: per cell the vertex ops (ascending),
then the input projections (ascending): alethiometer's per-layer order.

``load_zcjax_params`` copies a zcjax nb101 parameter tree (of the arch's signature) into it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from common import copy_weight

VERTEX_OPS = {2: "maxpool3x3", 3: "conv1x1-bn-relu", 4: "conv3x3-bn-relu"}


def parse_arch(arch: str) -> tuple[np.ndarray, list[str]]:
    """NASLib's key ``"(m00, ..., m66, op0, ..., op6)"`` -> (7x7 matrix, op names)."""
    values = [int(v) for v in arch.strip("() ").split(",")]
    matrix = np.array(values[:49]).reshape(7, 7)
    ops = ["input"] + [VERTEX_OPS[code] for code in values[50:55]] + ["output"]
    return matrix, ops


def prune(matrix: np.ndarray, ops: list[str]) -> tuple[np.ndarray, list[str]]:
    """``ModelSpec._prune``: keep the vertices reachable from the input and reaching the
    output."""
    size = len(matrix)
    forward, frontier = {0}, [0]
    while frontier:
        v = frontier.pop()
        for w in range(v + 1, size):
            if matrix[v, w] and w not in forward:
                forward.add(w)
                frontier.append(w)
    backward, frontier = {size - 1}, [size - 1]
    while frontier:
        v = frontier.pop()
        for w in range(v):
            if matrix[w, v] and w not in backward:
                backward.add(w)
                frontier.append(w)
    kept = sorted(forward & backward)
    return matrix[np.ix_(kept, kept)], [ops[v] for v in kept]


def compute_vertex_channels(in_channels: int, out_channels: int, matrix) -> list[int]:
    """``model_builder.compute_vertex_channels``."""
    size = len(matrix)
    channels = [0] * size
    channels[0], channels[-1] = in_channels, out_channels
    if size == 2:
        return channels
    in_degree = matrix[1:].sum(axis=0)
    interior, correction = divmod(out_channels, int(in_degree[-1]))
    for v in range(1, size - 1):
        if matrix[v, -1]:
            channels[v] = interior + (1 if correction else 0)
            correction = max(correction - 1, 0)
    for v in range(size - 3, 0, -1):
        if not matrix[v, -1]:
            for dst in range(v + 1, size - 1):
                if matrix[v, dst]:
                    channels[v] = max(channels[v], channels[dst])
        assert channels[v] > 0
    return channels


class ConvBnRelu(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.conv_bn_relu = nn.Sequential(nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2,
                                                    bias=False),
                                          nn.BatchNorm2d(c_out), nn.ReLU())

    def forward(self, x):
        return self.conv_bn_relu(x)


def vertex_op(op: str, channels: int) -> nn.Module:
    if op == "maxpool3x3":
        return nn.MaxPool2d(3, 1, 1)
    return ConvBnRelu(channels, channels, 3 if op == "conv3x3-bn-relu" else 1)


class Cell(nn.Module):
    def __init__(self, matrix: np.ndarray, ops: list[str], c_in: int, c_out: int):
        super().__init__()
        self.matrix, self.size = matrix, len(matrix)
        self.channels = compute_vertex_channels(c_in, c_out, matrix)
        self.vertex_op = nn.ModuleList(
            [nn.Identity()] + [vertex_op(ops[t], self.channels[t])
                               for t in range(1, self.size - 1)])
        self.input_op = nn.ModuleList(
            [nn.Identity()] + [ConvBnRelu(c_in, self.channels[t], 1) if matrix[0, t]
                               else nn.Identity() for t in range(1, self.size)])

    def forward(self, x):
        tensors, concat = [x], []
        for t in range(1, self.size - 1):
            fan_in = [tensors[s][:, :self.channels[t]] for s in range(1, t) if self.matrix[s, t]]
            if self.matrix[0, t]:
                fan_in.append(self.input_op[t](x))
            tensors.append(self.vertex_op[t](sum(fan_in)))
            if self.matrix[t, -1]:
                concat.append(tensors[t])
        if not concat:
            return self.input_op[-1](x)
        out = torch.cat(concat, 1)
        if self.matrix[0, -1]:
            out = out + self.input_op[-1](x)
        return out


class Network(nn.Module):
    def __init__(self, arch: str, stem_channels: int, stacks: int, cells_per_stack: int,
                 num_classes: int):
        super().__init__()
        matrix, ops = prune(*parse_arch(arch))
        layers = [ConvBnRelu(3, stem_channels, 3)]
        c_in = c_out = stem_channels
        for stack in range(stacks):
            if stack:
                layers.append(nn.MaxPool2d(2, 2))
                c_out *= 2
            for _ in range(cells_per_stack):
                layers.append(Cell(matrix, ops, c_in, c_out))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_out, num_classes)

    def forward(self, x):
        """``(pooled features, logits)``: the pair alethiometer's proxies unpack."""
        features = self.layers(x).mean(dim=(2, 3))
        return features, self.classifier(features)

    def cells(self) -> list[Cell]:
        return [layer for layer in self.layers if isinstance(layer, Cell)]


def _conv_bn_relu(module: ConvBnRelu, params: Mapping, prefix: str, index: int) -> None:
    conv, bn, _ = module.conv_bn_relu
    copy_weight(conv.weight, params[f"{prefix}_conv"]["kernel"][index])
    copy_weight(bn.weight, params[f"{prefix}_bn"]["scale"][index])
    copy_weight(bn.bias, params[f"{prefix}_bn"]["bias"][index])


def load_zcjax_params(model: Network, params: Mapping, cells_per_stack: int) -> Network:
    """Copy zcjax's nb101 ``params`` into ``model``.

    zcjax keeps, per run of same-shaped cells (``cells_<stack>_<first cell>``: stack 0's
    cells together; in later stacks the channel-doubling first cell alone, then the rest),
    every vertex's conv1x1 and conv3x3 and every input projection, stacked on a leading
    cell axis; the pruned vertex t's chosen conv reads ``vertex<t>_conv<k>x<k>``, the
    projection into it ``input<t>``.
    """
    stem_conv, stem_bn, _ = model.layers[0].conv_bn_relu
    copy_weight(stem_conv.weight, params["stem_conv"]["kernel"])
    copy_weight(stem_bn.weight, params["stem_bn"]["scale"])
    copy_weight(stem_bn.bias, params["stem_bn"]["bias"])
    for position, cell in enumerate(model.cells()):
        stack, index = divmod(position, cells_per_stack)
        first = 0 if stack == 0 or index == 0 else 1
        cells = params[f"cells_{stack}_{first}"]
        index -= first
        for t in range(1, cell.size - 1):
            op = cell.vertex_op[t]
            if isinstance(op, ConvBnRelu):
                k = op.conv_bn_relu[0].kernel_size[0]
                _conv_bn_relu(op, cells, f"vertex{t}_conv{k}x{k}", index)
        for t in range(1, cell.size):
            if isinstance(cell.input_op[t], ConvBnRelu):
                _conv_bn_relu(cell.input_op[t], cells, f"input{t}", index)
    copy_weight(model.classifier.weight, params["classifier"]["kernel"])
    copy_weight(model.classifier.bias, params["classifier"]["bias"])
    return model
