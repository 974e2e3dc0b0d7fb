"""TransNAS-Bench-101 micro (cell-level) search space.

The cell is NB201's (4 nodes, 6 edges, node ``j`` = sum over ``i < j`` of
``op_ij(node_i)``, output node 3) with four candidate ops, :data:`OPS`: ``none``,
``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3`` (4^6 = 4096 architectures). The
network is TransNAS-Bench-101's ``MacroNet("64-41414-<cell>", structure="full")``, the
classification network of the ``class_object`` / ``class_scene`` tasks:

    stem  Conv3x3(3 -> C/2, stride 2, no bias) + BN, ReLU-Conv3x3(C/2 -> C, stride 2)-BN
    5 layers of 2 cells, layer types "41414": type 4 doubles the channels and halves the
      resolution in its first cell; type 1 keeps both
    head  global average pool - Linear(C_last -> num_classes)    (no BN or ReLU before it)

with C = 64, so 64 -> 128 -> 128 -> 256 -> 256 -> 512 channels. In a layer's first cell
of type 2/3/4 the three edges leaving the cell input (node 0) map C_in -> C_out with the
layer's stride: their convs have that stride, ``skip_connect`` becomes a
FactorizedReduce (ReLU, two 1x1 convs with the stride on the input and on the input
shifted by one pixel, concatenated, BN) and ``none`` outputs zeros of the output's shape;
edges between inner nodes are NB201's. ``nor_conv_kxk`` is ReLU - Conv(no bias) - BN
(affine). Inputs are 256x256 in the benchmark (and in NASLib's zero-cost scores).

Differences from the benchmark's PyTorch network: weights start from PyTorch's default
init (as every space here; the benchmark's ``MacroNet`` re-draws conv weights with
Kaiming-normal fan-out), BatchNorm is stateless (batch statistics), and zen omits the
FactorizedReduce BatchNorms: their input is the concatenation of two layer outputs,
which the layer table cannot name (see :func:`_layer_table`).

Encodings. The canonical arch string is NB201's format with these ops
(``"|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|"``); the genotype is the int32 (6,)
op indices in its edge order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2). The benchmark's own
name for a cell is ``"64-41414-a_bc_def"`` (:func:`to_tnb101`), whose digits (0 = Zero,
1 = Identity/FactorizedReduce, 2 = ReLUConvBN 1x1, 3 = ReLUConvBN 3x3) are our op indices
in our edge order. NASLib's zero-cost JSON keys (``"(a, b, c, d, e, f)"``,
:func:`from_naslib`) are those same six digits: NASLib formats them straight into
``"64-41414-{}_{}{}_{}{}{}"`` to query the benchmark, and its stored ``params`` match this
network for all 711 keys on both classification tasks under that reading (under NASLib's
own edge order or its ``OP_NAMES`` order, Identity/Zero/3x3/1x1, at most 179 do).

The genotype is DATA: one compiled network (:func:`network`) serves every architecture
(``lax.switch`` per edge under custom VJPs, :mod:`zcjax.spaces.switch`); normal cells
are the scanned NB201-style cells of ``zcjax.spaces._cell`` (``CellStack``).

References:
  Duan et al., "TransNAS-Bench-101: Improving Transferability and Generalizability of
  Cross-Task Neural Architecture Search", CVPR 2021 (github.com/yawen-d/TransNASBench,
  vendored in NASLib as ``naslib/search_spaces/transbench101/tnb101``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from zcjax import nn
from zcjax.network import Block, Layer, Network
from zcjax.space import SearchSpace
from zcjax.spaces import _cell, ops
from zcjax.spaces._cell import CONV_OPS, EDGE_NAMES, EDGES, NUM_EDGES
from zcjax.spaces._network import ConvBN, LayerTable, SpaceModule, edge_layers_active, make_network
from zcjax.spaces.switch import switched

Array = jax.Array

OPS = _cell.CELL_OPS[:4]  # none, skip_connect, nor_conv_1x1, nor_conv_3x3: TNB101's codes 0-3
OP_INDEX = {name: index for index, name in enumerate(OPS)}
SKIP = OP_INDEX["skip_connect"]
NUM_ARCHS = len(OPS) ** NUM_EDGES
INPUT_EDGES = tuple(index for index, (_, source) in enumerate(EDGES) if source == 0)
TASK_CLASSES = {"class_object": 100, "class_scene": 63}  # the benchmark's classification heads
_SPACE = "TNB101-micro"
_NASLIB_KEY = re.compile(r"\(\s*([0-9]+)\s*,\s*([0-9]+)\s*,\s*([0-9]+)\s*,\s*([0-9]+)\s*,"
                         r"\s*([0-9]+)\s*,\s*([0-9]+)\s*,?\s*\)")
_TNB_CODE = re.compile(r"([0-9]+)-([0-9]+)-([0-9])_([0-9]{2})_([0-9]{3})")


@dataclasses.dataclass(frozen=True)
class Config:
    """Network shape. The benchmark's is the default; tests use smaller ones.

    Attributes:
      base_channels: C, the stem's output channels (even: the stem's first conv has C/2).
      macro: one digit per layer: 1 keeps channels and resolution, 2 doubles the
        channels, 3 halves the resolution, 4 does both (in the layer's first cell).
      cells_per_layer: cells in each layer.
      num_classes: classifier width (100: class_object; 63: class_scene; pass the
        dataset's when scoring on other data).
      image_size: input height and width (256 in the benchmark and NASLib's scores).
    """

    base_channels: int = 64
    macro: str = "41414"
    cells_per_layer: int = 2
    num_classes: int = TASK_CLASSES["class_object"]
    image_size: int = 256

    def __post_init__(self):
        if self.base_channels < 2 or self.base_channels % 2:
            raise ValueError(f"TNB101-micro base_channels must be even and >= 2, got "
                             f"{self.base_channels}")
        if not self.macro or set(self.macro) - set("1234"):
            raise ValueError(f"TNB101-micro macro code is a string of layer types 1-4, got "
                             f"{self.macro!r}")
        if self.cells_per_layer < 1:
            raise ValueError(f"TNB101-micro cells_per_layer must be >= 1, got "
                             f"{self.cells_per_layer}")


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One macro layer: its first cell maps in_channels -> out_channels with stride."""

    index: int
    in_channels: int
    out_channels: int
    stride: int
    in_size: int
    out_size: int
    normal_cells: int  # cells after the first, or all of them if the first changes nothing

    @property
    def reduces(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels


def _strided(size: int, stride: int) -> int:
    """Output size of a 3x3/pad-1 or 1x1/pad-0 conv with this stride."""
    return (size - 1) // stride + 1


def _stem_sizes(config: Config) -> tuple[int, int]:
    first = _strided(config.image_size, 2)
    return first, _strided(first, 2)


def _layers(config: Config) -> list[_Layer]:
    layers, channels, size = [], config.base_channels, _stem_sizes(config)[1]
    for index, kind in enumerate(int(digit) for digit in config.macro):
        out_channels = channels * 2 if kind % 2 == 0 else channels
        stride = 2 if kind > 2 else 1
        out_size = _strided(size, stride)
        layer = _Layer(index, channels, out_channels, stride, size, out_size,
                       config.cells_per_layer)
        if layer.reduces:
            layer = dataclasses.replace(layer, normal_cells=config.cells_per_layer - 1)
        layers.append(layer)
        channels, size = out_channels, out_size
    return layers


# ---------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------
def encode(arch: str) -> np.ndarray:
    """Canonical arch string (NB201's format, :data:`OPS`) -> int32 genotype (6,).

    Raises:
      ValueError: naming the first malformed part.
    """
    return _cell.encode_cell(arch, OPS, space=_SPACE)


def validate_genotype(genotype) -> np.ndarray:
    """Check a concrete int genotype; return it as int32 (6,)."""
    return _cell.validate_cell_genotype(genotype, OPS, space=_SPACE)


def decode(genotype) -> str:
    """int genotype (6,) -> canonical arch string. Inverse of :func:`encode`."""
    return _cell.decode_cell(genotype, OPS, space=_SPACE)


def from_naslib(key) -> np.ndarray:
    """NASLib's TransNAS-Bench-101 micro key ``"(a, b, c, d, e, f)"`` -> genotype.

    The key's digits are the benchmark's op codes in our edge order (see the module
    docstring), so the genotype is the key itself. A tuple or list of six ints works too.

    Raises:
      ValueError: for anything but six op codes 0-3.
    """
    if isinstance(key, str):
        match = _NASLIB_KEY.fullmatch(key.strip())
        if match is None:
            raise ValueError(f"malformed NASLib {_SPACE} key {key!r}: expected six "
                             "comma-separated op codes in parentheses, e.g. '(1, 0, 0, 2, 1, 0)'")
        key = [int(digit) for digit in match.groups()]
    return validate_genotype(key)


def to_naslib(genotype) -> str:
    """Genotype -> NASLib's key string ``"(a, b, c, d, e, f)"``."""
    return str(tuple(int(op) for op in validate_genotype(genotype)))


def from_tnb101(code: str) -> np.ndarray:
    """The benchmark's arch name ``"64-41414-a_bc_def"`` -> genotype.

    Raises:
      ValueError: if the name is malformed or not a micro cell of the 64-41414 network.
    """
    match = _TNB_CODE.fullmatch(code.strip()) if isinstance(code, str) else None
    if match is None:
        raise ValueError(f"malformed TransNAS-Bench-101 micro arch {code!r}: expected "
                         "'64-41414-a_bc_def' with op codes 0-3")
    if match.group(1) != "64" or match.group(2) != "41414":
        raise ValueError(f"TransNAS-Bench-101 micro arch {code!r} is not a cell of the "
                         "64-41414 network")
    return validate_genotype([int(digit) for digit in "".join(match.groups()[2:])])


def to_tnb101(genotype) -> str:
    """Genotype -> the benchmark's arch name ``"64-41414-a_bc_def"``."""
    codes = "".join(str(int(op)) for op in validate_genotype(genotype))
    return f"64-41414-{codes[0]}_{codes[1:3]}_{codes[3:]}"


def check_arch(arch_or_genotype) -> np.ndarray:
    """Canonical string, NASLib key, benchmark name or int genotype -> int32 genotype."""
    if isinstance(arch_or_genotype, str):
        text = arch_or_genotype.strip()
        if text.startswith("("):
            return from_naslib(text)
        if text[:1].isdigit():
            return from_tnb101(text)
        return encode(arch_or_genotype)
    return validate_genotype(arch_or_genotype)


def all_genotypes() -> np.ndarray:
    """All 4096 genotypes, (4096, 6) int32, in base-4 order."""
    return _cell.all_cell_genotypes(len(OPS))


def sample(key: Array, num: int, *, replace: bool = False) -> np.ndarray:
    """``num`` genotypes drawn uniformly with a JAX key, (num, 6) int32."""
    return _cell.sample_cells(key, num, len(OPS), replace=replace)


def mutate(genotype, rng: np.random.Generator) -> np.ndarray:
    """One edge takes another op (NASLib's mutation; :func:`zcjax.spaces._cell.mutate_cell`)."""
    return _cell.mutate_cell(genotype, rng, OPS, space=_SPACE)


def arch_strings(genotypes: Sequence) -> list[str]:
    """Decode many genotypes."""
    return [decode(g) for g in np.asarray(genotypes)]


# ---------------------------------------------------------------------------
# Active network: parameter count and FLOPs (static, from the genotype)
# ---------------------------------------------------------------------------
def _cell_shapes(config: Config):
    """Per cell of the network: (in_channels, out_channels, stride, out_size)."""
    for layer in _layers(config):
        if layer.reduces:
            yield layer.in_channels, layer.out_channels, layer.stride, layer.out_size
        for _ in range(layer.normal_cells):
            yield layer.out_channels, layer.out_channels, 1, layer.out_size


def _cost_tables(config: Config) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Fixed parts and per-(cell, edge, op) costs: params and FLOPs.

    NAS-Bench-201's conventions, as :func:`zcjax.spaces.nb201.param_count`: a conv counts
    ``H_out W_out C_out C_in k^2`` FLOPs, the classifier ``in * out + out``; BatchNorm
    affine parameters count as parameters but no FLOPs; ReLUs and sums count nothing.
    NASLib's TNB101 ``flops`` field also counts one FLOP per ReLU input element and two
    per BatchNorm output element (plus a constant of the head), so it is larger.
    """
    half, channels = config.base_channels // 2, config.base_channels
    first, second = _stem_sizes(config)
    fixed_params = 27 * half + 2 * half + 9 * half * channels + 2 * channels
    fixed_flops = first * first * half * 27 + second * second * channels * half * 9
    shapes = list(_cell_shapes(config))
    params = np.zeros((len(shapes), NUM_EDGES, len(OPS)), np.int64)
    flops_ = np.zeros_like(params)
    for cell, (c_in, c_out, stride, size) in enumerate(shapes):
        for edge, (_, source) in enumerate(EDGES):
            edge_in, edge_stride = (c_in, stride) if source == 0 else (c_out, 1)
            for op, kernel in CONV_OPS.items():
                params[cell, edge, op] = kernel ** 2 * edge_in * c_out + 2 * c_out
                flops_[cell, edge, op] = size * size * c_out * edge_in * kernel ** 2
            if edge_stride != 1 or edge_in != c_out:  # FactorizedReduce
                params[cell, edge, SKIP] = edge_in * c_out + 2 * c_out
                flops_[cell, edge, SKIP] = size * size * c_out * edge_in
    last = shapes[-1][1]
    fixed_params += last * config.num_classes + config.num_classes
    fixed_flops += last * config.num_classes + config.num_classes
    return fixed_params, fixed_flops, params, flops_


def _edge_total(table: np.ndarray, genotype):
    """Sum over cells and edges of ``table[cell, edge, op]``; NumPy or traced genotypes.

    Traced, the sum is int64 under x64 and float32 otherwise: the benchmark network's
    FLOPs reach 8.5e9, past int32.
    """
    edges = np.arange(NUM_EDGES)
    if isinstance(genotype, np.ndarray):
        return int(table[:, edges, genotype].sum())
    dtype = jnp.int64 if jax.config.jax_enable_x64 else jnp.float32
    return jnp.asarray(table, dtype)[:, edges, genotype].sum()


def param_count(arch, config: Config = Config()) -> int:
    """Parameters of the active network (conv, BN affine, linear); unused ops never count.

    Equals NASLib's TNB101 micro ``params`` field for the classification tasks (with
    ``num_classes`` 100 or 63). Accepts any arch form or a genotype; a traced genotype
    gives a traced count (int64 under x64, else float32).
    """
    genotype = arch if isinstance(arch, jax.core.Tracer) else check_arch(arch)
    fixed, _, per_edge, _ = _cost_tables(config)
    return fixed + _edge_total(per_edge, genotype)


def flops(arch, config: Config = Config()) -> int:
    """FLOPs (multiply-accumulates of convs and the classifier) of one image.

    See :func:`_cost_tables` for the convention and how NASLib's field differs.
    """
    genotype = arch if isinstance(arch, jax.core.Tracer) else check_arch(arch)
    _, fixed, _, per_edge = _cost_tables(config)
    return fixed + _edge_total(per_edge, genotype)


# ---------------------------------------------------------------------------
# The first cell of a layer that changes channels or resolution
# ---------------------------------------------------------------------------
def reduction_op_functions(bn: nn.BatchNormMode, conv, stride: int, out_shape):
    """The ops of an edge leaving a reduction cell's input, ``(params, x, eps) -> (y, taps)``.

    ``taps`` = (conv output (N, H', W', C_out), FactorizedReduce's two conv outputs
    (2, N, H', W', C_out/2)), zero where the op has none; ``eps`` has the same structure
    (zero perturbations whose gradients are those w.r.t. the taps).
    """
    batch, height, width, channels = out_shape
    half_shape = (2, batch, height, width, channels // 2)

    def bn_apply(params, name, out, dtype):
        scale, bias = params[name]["scale"], params[name]["bias"]
        return nn.batch_norm(out, scale.astype(dtype), bias.astype(dtype), bn)

    def zeros(x):
        return jnp.zeros(out_shape, x.dtype), jnp.zeros(half_shape, x.dtype)

    def none(params, x, eps):
        y, halves = zeros(x)
        return y, (y, halves)

    def factorized_reduce(params, x, eps):
        x = jax.nn.relu(x)
        halves = ops.factorized_reduce_halves(conv, x, params["factorized_a"]["kernel"],
                                              params["factorized_b"]["kernel"], stride) + eps[1]
        out = jnp.concatenate([halves[0], halves[1]], axis=-1)
        return bn_apply(params, "bn_factorized", out, x.dtype), (zeros(x)[0], halves)

    def conv_op(size):
        def op(params, x, eps):
            out = conv(jax.nn.relu(x), params[f"conv{size}x{size}"]["kernel"], stride,
                       size // 2) + eps[0]
            return bn_apply(params, f"bn{size}x{size}", out, x.dtype), (out, zeros(x)[1])

        return op

    return (none, factorized_reduce, conv_op(1), conv_op(3))


class ReductionEdgeParams(linen.Module):
    """Every candidate op's parameters on an edge leaving a reduction cell's input."""

    in_channels: int
    out_channels: int

    @linen.compact
    def __call__(self):
        params = {}
        for size in CONV_OPS.values():
            params[f"conv{size}x{size}"] = {"kernel": nn.ConvParams(
                self.in_channels, self.out_channels, size, name=f"conv{size}x{size}")()}
            scale, bias = nn.BatchNormParams(self.out_channels, name=f"bn{size}x{size}")()
            params[f"bn{size}x{size}"] = {"scale": scale, "bias": bias}
        for path in ("a", "b"):
            params[f"factorized_{path}"] = {"kernel": nn.ConvParams(
                self.in_channels, self.out_channels // 2, 1, name=f"factorized_{path}")()}
        scale, bias = nn.BatchNormParams(self.out_channels, name="bn_factorized")()
        params["bn_factorized"] = {"scale": scale, "bias": bias}
        return params


class ReductionCell(SpaceModule):
    """A layer's first cell when it changes channels and/or resolution."""

    in_channels: int
    out_channels: int
    stride: int

    @linen.compact
    def __call__(self, x: Array, genotype) -> Array:
        x = self.block_input(x)
        size = (_strided(x.shape[1], self.stride), _strided(x.shape[2], self.stride))
        out_shape = (x.shape[0],) + size + (self.out_channels,)
        params = {
            name: (ReductionEdgeParams(self.in_channels, self.out_channels, name=name)()
                   if source == 0 else _cell.EdgeParams(self.out_channels, None, name=name)())
            for name, (_, source) in zip(EDGE_NAMES, EDGES)
        }
        params = jax.tree.map(lambda p: p.astype(x.dtype), params)
        conv_eps = self.perturb("conv_out", jnp.zeros((NUM_EDGES,) + out_shape, x.dtype))
        half_shape = out_shape[:-1] + (self.out_channels // 2,)
        factorized_eps = self.perturb(
            "factorized_out", jnp.zeros((len(INPUT_EDGES), 2) + half_shape, x.dtype))
        input_ops = reduction_op_functions(self.bn, self.conv, self.stride, out_shape)
        inner_ops = _cell.op_functions(self.bn, self.conv)[:len(OPS)]
        if self.compiled:
            input_edge = functools.partial(switched, input_ops)
            inner_edge = functools.partial(switched, inner_ops)
        else:
            input_edge = lambda op, p, h, e: input_ops[op](p, h, e)  # noqa: E731
            inner_edge = lambda op, p, h, e: inner_ops[op](p, h, e)  # noqa: E731
        edges, eps = [], []
        for index, (_, source) in enumerate(EDGES):
            if source == 0:
                edges.append(input_edge)
                eps.append((conv_eps[index], factorized_eps[INPUT_EDGES.index(index)]))
            else:
                edges.append(inner_edge)
                eps.append(conv_eps[index])
        y, taps, nodes = _cell.cell_forward(edges, params, x, genotype, eps)
        conv_outputs = [t[0] if source == 0 else t for t, (_, source) in zip(taps, EDGES)]
        self.sow("intermediates", "conv_out", jnp.stack(conv_outputs))
        self.sow("intermediates", "factorized_out", jnp.stack([taps[e][1] for e in INPUT_EDGES]))
        # ReLU modules reading the cell input: one per conv op and per FactorizedReduce;
        # only the convs' ReLUConvBN wrappers have "ReLU" in their class name.
        convs = sum(_cell.is_conv(genotype[e]) for e in INPUT_EDGES)
        factorized = sum(jnp.asarray(genotype[e] == SKIP, jnp.int32) for e in INPUT_EDGES)
        self.sow("relu", "input", (x, convs + factorized, convs))
        readers = jnp.stack([
            sum(_cell.is_conv(genotype[e]) for e, (_, s) in enumerate(EDGES) if s == source)
            for source in (1, 2)
        ])
        self.sow("relu", "nodes", (jnp.stack(nodes[1:]), readers, readers))
        return self.block_output(y)


# ---------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------
class TNB101MicroNetwork(SpaceModule):
    """TransNAS-Bench-101's classification MacroNet for one micro cell (genotype)."""

    config: Config = Config()

    @linen.compact
    def __call__(self, images: Array, genotype) -> Array:
        config, half = self.config, self.config.base_channels // 2
        x = ConvBN(3, half, 3, 2, relu=False, bn=self.bn, compiled=self.compiled,
                   name="stem_0")(images)
        x = ConvBN(half, config.base_channels, 3, 2, bn=self.bn, compiled=self.compiled,
                   name="stem_1")(x)
        x = self.block_output(x, "stem_output")
        settings = {"bn": self.bn, "compiled": self.compiled,
                    "isolate_blocks": self.isolate_blocks}
        for layer in _layers(config):
            if layer.reduces:
                x = ReductionCell(layer.in_channels, layer.out_channels, layer.stride,
                                  name=f"layer{layer.index}_reduction", **settings)(x, genotype)
            if layer.normal_cells:
                x = _cell.CellStack(layer.out_channels, layer.normal_cells, num_ops=len(OPS),
                                    name=f"layer{layer.index}_cells", **settings)(x, genotype)
        self.sow("features", "pre_gap", x)
        # Every BatchNorm input is a layer output here (FactorizedReduce's aside): declare
        # an empty list of other BatchNorm inputs.
        self.sow("features", "bn_input", None, init_fn=tuple, reduce_fn=lambda xs, _: xs)
        logits = nn.Dense(config.num_classes, name="classifier")(nn.global_avg_pool(x))
        logits = self.perturb("logits", logits)
        self.sow("intermediates", "logits", logits)
        return logits


def _layer_table(config: Config) -> tuple[tuple[Layer, ...], np.ndarray, np.ndarray]:
    """Layers in the reference network's module order, with (edge, op) selectors.

    A FactorizedReduce's two 1x1 convs are two layers whose outputs are the two halves
    of its BatchNorm's input; neither is marked ``batch_norm`` (no single layer output
    is that BatchNorm's input), so zen leaves those BatchNorms out.
    """
    table = LayerTable()
    add = table.add

    half, channels = config.base_channels // 2, config.base_channels
    add("stem_0/conv", "conv", (3, 3, 3, half), ("stem_0", "conv", "kernel"),
        ("stem_0", "conv_out"))
    add("stem_1/conv", "conv", (3, 3, half, channels), ("stem_1", "conv", "kernel"),
        ("stem_1", "conv_out"))
    for layer in _layers(config):
        c_in, c_out = layer.in_channels, layer.out_channels
        if layer.reduces:
            cell = f"layer{layer.index}_reduction"
            for edge, (_, source) in enumerate(EDGES):
                edge_name, edge_in = EDGE_NAMES[edge], c_in if source == 0 else c_out
                for op, size in CONV_OPS.items():
                    conv = f"conv{size}x{size}"
                    add(f"{cell}/{edge_name}/{conv}", "conv", (size, size, edge_in, c_out),
                        (cell, edge_name, conv, "kernel"), (cell, "conv_out"), edge, op,
                        output_index=(edge,))
                if source == 0:
                    for path_index, path in enumerate(("a", "b")):
                        add(f"{cell}/{edge_name}/factorized_{path}", "conv",
                            (1, 1, c_in, c_out // 2),
                            (cell, edge_name, f"factorized_{path}", "kernel"),
                            (cell, "factorized_out"), edge, SKIP, batch_norm=False,
                            output_index=(INPUT_EDGES.index(edge), path_index))
        _cell.add_cell_stack(table, f"layer{layer.index}_cells", layer.normal_cells, c_out)
        channels = c_out
    add("classifier", "linear", (channels, config.num_classes), ("classifier", "kernel"),
        ("logits",))
    return table.build()


def _blocks(config: Config) -> tuple[Block, ...]:
    """The stem (both convs), then per layer its reduction cell (if it reduces) and its
    normal cells: AZ-NAS's feature maps."""
    blocks = [Block("stem", ("stem_output",))]
    for layer in _layers(config):
        if layer.reduces:
            cell = f"layer{layer.index}_reduction"
            blocks.append(Block(cell, (cell, "output"), input_path=(cell, "input")))
        blocks += _cell.cell_stack_blocks(f"layer{layer.index}_cells", layer.normal_cells)
    return tuple(blocks)


@functools.lru_cache(maxsize=None)
def network(config: Config = Config()) -> Network:
    """The compiled-once TNB101 micro network for ``config`` (a :class:`Network`)."""
    return _make_network(config, compiled=True)


@functools.lru_cache(maxsize=None)
def reference_network(config: Config = Config()) -> Network:
    """The per-architecture reference: the same parameters, plain Python control flow.

    Its ``apply`` needs a concrete genotype (one compilation per architecture under jit).
    """
    return _make_network(config, compiled=False)


def _make_network(config: Config, *, compiled: bool) -> Network:
    layers, layer_edges, layer_ops = _layer_table(config)
    return make_network(
        space="tnb101_micro", config=config, compiled=compiled, module=TNB101MicroNetwork,
        init_genotype=jnp.zeros(NUM_EDGES, jnp.int32),
        traced=lambda genotype: jnp.asarray(genotype, jnp.int32),
        concrete=lambda genotype: tuple(int(op) for op in validate_genotype(genotype)),
        layers=layers, active=edge_layers_active(layer_edges, layer_ops),
        param_count=param_count, flops=flops, blocks=_blocks(config))


SPACE = SearchSpace(
    name="tnb101_micro", Config=Config, num_archs=NUM_ARCHS,
    encode=encode, decode=decode, check_arch=check_arch, arch_strings=arch_strings,
    sample=sample, network=network, reference_network=reference_network,
    param_count=param_count, flops=flops, all_genotypes=all_genotypes, mutate=mutate,
    from_naslib=from_naslib, to_naslib=to_naslib, naslib_name="transbench101_micro",
)
