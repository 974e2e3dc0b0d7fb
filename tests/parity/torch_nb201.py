"""A PyTorch NAS-Bench-201 network for parity tests against reference (PyTorch) proxies.

Structurally the same as NAS-Bench-201's ``TinyNetwork`` / ``InferCell`` /
``ResNetBasicblock`` (Dong & Yang, ICLR 2020; the NATS-Bench ``xautodl`` models) for one
architecture string: only the chosen op of each edge is built, and modules are registered
in the order stem, stage-0 cells, reduction 1, stage-1 cells, reduction 2, stage-2 cells,
lastact, classifier (within a cell, the ops in arch-string edge order). Every ReLU is its
own ``nn.ReLU`` module, so ReLU forward hooks (NASWOT) see each one.

``load_zcjax_params`` copies a zcjax NB201 parameter tree into the model, so both
frameworks evaluate the SAME weights.

This file is test support only: it imports torch, which zcjax itself never needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), arch-string order


def parse_arch(arch: str) -> list[str]:
    """Arch string -> the 6 op names in edge order ((1,0),(2,0),(2,1),(3,0),(3,1),(3,2))."""
    ops = []
    for node, text in enumerate(arch.split("+"), start=1):
        entries = [entry for entry in text.split("|") if entry]
        if len(entries) != node:
            raise ValueError(f"malformed NB201 arch {arch!r}")
        for source, entry in enumerate(entries):
            op, index = entry.split("~")
            if op not in OPS or int(index) != source:
                raise ValueError(f"malformed NB201 arch {arch!r}: {entry!r}")
            ops.append(op)
    return ops


class Zero(nn.Module):
    """NB201's ``Zero`` op with stride 1 and C_in == C_out: ``x.mul(0.)``."""

    def forward(self, x):
        return x.mul(0.0)


class Identity(nn.Module):
    def forward(self, x):
        return x


class ReLUConvBN(nn.Module):
    """ReLU -> Conv (no bias) -> BN(affine), NB201's ``ReLUConvBN``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=True, track_running_stats=True),
        )

    def forward(self, x):
        return self.op(x)


class ActConvBN(ReLUConvBN):
    """``ReLUConvBN`` under a class name without "ReLU".

    Reference NASWOT code hooks every module with "ReLU" in its class name; with this
    class only the ``nn.ReLU`` modules themselves are hooked (one count per ReLU).
    """


class Pooling(nn.Module):
    """NB201's ``POOLING`` with C_in == C_out: AvgPool2d(3, 1, 1, count_include_pad=False)."""

    def __init__(self):
        super().__init__()
        self.op = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x):
        return self.op(x)


def make_op(name: str, channels: int, conv_bn=ReLUConvBN) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return Identity()
    if name == "nor_conv_1x1":
        return conv_bn(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return conv_bn(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return Pooling()
    raise ValueError(name)


class InferCell(nn.Module):
    """One NB201 cell with the ops of ``ops`` (edge order), C_in == C_out, stride 1."""

    def __init__(self, ops: Sequence[str], channels: int, conv_bn=ReLUConvBN):
        super().__init__()
        self.layers = nn.ModuleList([make_op(op, channels, conv_bn) for op in ops])

    def forward(self, x):
        nodes = [x]
        for target in range(1, 4):
            nodes.append(sum(self.layers[e](nodes[s])
                             for e, (t, s) in enumerate(EDGES) if t == target))
        return nodes[-1]


class ResNetBasicblock(nn.Module):
    """NB201's stride-2 ``ResNetBasicblock``: conv_a, conv_b, then the downsample shortcut."""

    def __init__(self, c_in: int, c_out: int, conv_bn=ReLUConvBN):
        super().__init__()
        self.conv_a = conv_bn(c_in, c_out, 3, 2, 1)
        self.conv_b = conv_bn(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x):
        basicblock = self.conv_a(x)
        basicblock = self.conv_b(basicblock)
        residual = self.downsample(x)
        return residual + basicblock


class TinyNetwork(nn.Module):
    """NB201's ``TinyNetwork`` for one architecture.

    ``forward`` returns ``(features, logits)`` like the benchmark's model (alethiometer's
    metrics take the second element of a tuple output). ``nb201_class_names=False``
    builds the ReLU-Conv-BN ops as :class:`ActConvBN` (same structure, a class name
    without "ReLU"), which only changes what name-based ReLU hooks see.
    """

    def __init__(self, arch: str, channels=(16, 32, 64), cells_per_stage: int = 5,
                 num_classes: int = 10, *, nb201_class_names: bool = True):
        super().__init__()
        conv_bn = ReLUConvBN if nb201_class_names else ActConvBN
        ops = parse_arch(arch)
        self.arch = arch
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels[0], kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
        )
        cells = []
        previous = channels[0]
        for stage, width in enumerate(channels):
            if stage:
                cells.append(ResNetBasicblock(previous, width, conv_bn))
            cells.extend(InferCell(ops, width, conv_bn) for _ in range(cells_per_stage))
            previous = width
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(previous), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(previous, num_classes)

    def forward_before_global_avg_pool(self, x):
        feature = self.stem(x)
        for cell in self.cells:
            feature = cell(feature)
        return self.lastact(feature)

    def forward(self, x):
        out = self.forward_before_global_avg_pool(x)
        out = self.global_pooling(out)
        out = out.view(out.size(0), -1)
        return out, self.classifier(out)


# ---------------------------------------------------------------------------
# zcjax parameters -> torch
# ---------------------------------------------------------------------------
def _conv(kernel) -> torch.Tensor:
    """HWIO -> OIHW."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel).transpose(3, 2, 0, 1)))


def _vec(value) -> torch.Tensor:
    return torch.from_numpy(np.array(value, copy=True))


def _copy(target: torch.Tensor, value: torch.Tensor) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise ValueError(f"shape mismatch: torch {tuple(target.shape)} vs zcjax {tuple(value.shape)}")
    with torch.no_grad():
        target.copy_(value.to(target.dtype))


def _load_bn(bn: nn.BatchNorm2d, params: Mapping, index=()) -> None:
    _copy(bn.weight, _vec(np.asarray(params["scale"])[index]))
    _copy(bn.bias, _vec(np.asarray(params["bias"])[index]))


def _load_relu_conv_bn(module: ReLUConvBN, params: Mapping) -> None:
    """``params`` = zcjax ConvBN params ``{"conv": {"kernel"}, "bn": {"scale", "bias"}}``."""
    _copy(module.op[1].weight, _conv(params["conv"]["kernel"]))
    _load_bn(module.op[2], params["bn"])


def load_zcjax_params(model: TinyNetwork, params: Mapping, arch: str | None = None) -> TinyNetwork:
    """Copy a zcjax NB201 param tree (``variables["params"]``) into ``model`` in place.

    Conv kernels HWIO -> OIHW, the Dense kernel (in, out) -> (out, in), cell parameters
    taken at ``[cell]`` of the stage's stack, BN scale -> weight, bias -> bias. Only the
    chosen ops' parameters are read (the candidates not taken have no torch module).
    """
    arch = model.arch if arch is None else arch
    ops = parse_arch(arch)
    params = _to_numpy(params)
    _copy(model.stem[0].weight, _conv(params["stem"]["conv"]["kernel"]))
    _load_bn(model.stem[1], params["stem"]["bn"])
    stages = sorted(int(name.split("_")[1]) for name in params if name.startswith("cells_"))
    position = 0
    for stage in stages:
        if stage:
            block = model.cells[position]
            assert isinstance(block, ResNetBasicblock)
            reduction = params[f"reduction_{stage}"]
            _load_relu_conv_bn(block.conv_a, reduction["conv_a"])
            _load_relu_conv_bn(block.conv_b, reduction["conv_b"])
            _copy(block.downsample[1].weight, _conv(reduction["shortcut"]["kernel"]))
            position += 1
        stack = params[f"cells_{stage}"]
        cells = np.asarray(stack["edge_1_0"]["conv1x1"]["kernel"]).shape[0]
        for cell in range(cells):
            module = model.cells[position]
            assert isinstance(module, InferCell)
            for edge, ((target, source), op) in enumerate(zip(EDGES, ops)):
                if op not in ("nor_conv_1x1", "nor_conv_3x3"):
                    continue
                size = 1 if op == "nor_conv_1x1" else 3
                edge_params = stack[f"edge_{target}_{source}"]
                layer = module.layers[edge]
                _copy(layer.op[1].weight, _conv(edge_params[f"conv{size}x{size}"]["kernel"][cell]))
                _load_bn(layer.op[2], edge_params[f"bn{size}x{size}"], cell)
            position += 1
    if position != len(model.cells):
        raise ValueError(f"the param tree has {position} cells+blocks, the model {len(model.cells)}")
    _load_bn(model.lastact[0], params["head_bn"])
    _copy(model.classifier.weight,
          torch.from_numpy(np.ascontiguousarray(params["classifier"]["kernel"].T)))
    _copy(model.classifier.bias, _vec(params["classifier"]["bias"]))
    return model


def _to_numpy(tree):
    if isinstance(tree, Mapping):
        return {key: _to_numpy(value) for key, value in tree.items()}
    return np.asarray(tree)


def layer_modules(model: nn.Module) -> list[nn.Module]:
    """The Conv2d/Linear modules in registration order (alethiometer's layer order)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
