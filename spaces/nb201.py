"""NAS-Bench-201 (= NATS-Bench topology search space).

A cell is a DAG on 4 nodes; node ``j`` is the sum over ``i < j`` of ``op_ij(node_i)`` with
``op`` one of :data:`OPS`, and the cell's output is node 3. The network is the one the
benchmark trained (``TinyNetwork``/``InferCell`` of NAS-Bench-201, not foresight's variant):

    stem  Conv3x3(3 -> C0, no bias) + BN
    stage 0: N cells at C0   | ResNet basic block C0 -> C1, stride 2
    stage 1: N cells at C1   | ResNet basic block C1 -> C2, stride 2
    stage 2: N cells at C2
    head  BN - ReLU - global average pool - Linear(C2 -> num_classes)

with ``nor_conv_kxk`` = ReLU - Conv(no bias) - BN(affine), ``avg_pool_3x3`` stride 1,
padding 1, ``count_include_pad=False``; the basic block is ReLU-Conv3x3(stride 2)-BN,
ReLU-Conv3x3-BN plus a shortcut AvgPool2x2 -> Conv1x1 (no bias). Defaults: C = 16/32/64,
N = 5.

The genotype is DATA: an int32 array of the 6 edges' op indices in arch-string order
(1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2). Every edge holds the parameters of every candidate
op and ``lax.switch`` runs only the chosen one (:func:`zcjax.spaces.switch.switched`), so
one compilation serves all 15625 architectures (:func:`network`). :func:`reference_network`
builds the plain per-architecture module (Python control flow, stock autodiff) that tests
hold the compiled form against.

References:
  Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture
  Search", ICLR 2020. Dong et al., "NATS-Bench", TPAMI 2021.
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
from zcjax.network import Layer, Network
from zcjax.spaces.switch import switched

Array = jax.Array

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
OP_INDEX = {name: index for index, name in enumerate(OPS)}
CONV_OPS = {OP_INDEX["nor_conv_1x1"]: 1, OP_INDEX["nor_conv_3x3"]: 3}  # op -> kernel size
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), arch-string order
NUM_EDGES = len(EDGES)
NUM_NODES = 4
NUM_ARCHS = len(OPS) ** NUM_EDGES

_NODE_PATTERN = re.compile(r"\|([^|~]+)~([0-9]+)")


@dataclasses.dataclass(frozen=True)
class Config:
    """Network shape. The benchmark's is the default; tests use smaller ones."""

    channels: tuple[int, ...] = (16, 32, 64)
    cells_per_stage: int = 5
    num_classes: int = 10
    image_size: int = 32


# ---------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------
def encode(arch: str) -> np.ndarray:
    """Arch string -> int32 genotype of shape (6,).

    Args:
      arch: ``"|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"``.

    Raises:
      ValueError: naming the first malformed part.
    """
    return encode_cell(arch, OPS, space="NB201")


def validate_genotype(genotype) -> np.ndarray:
    """Check a concrete int genotype; return it as int32 (6,)."""
    return validate_cell_genotype(genotype, OPS, space="NB201")


def decode(genotype) -> str:
    """int genotype (6,) -> canonical arch string. Inverse of :func:`encode`."""
    return decode_cell(genotype, OPS, space="NB201")


# The codec of any NB201-style cell (4 nodes, 6 edges, one op per edge), shared with the
# spaces built on the same cell (TransNAS-Bench-101 micro).
def encode_cell(arch: str, ops: Sequence[str], *, space: str) -> np.ndarray:
    """``"|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"`` -> int32 (6,) indices into ``ops``.

    Raises:
      ValueError: naming ``space`` and the first malformed part.
    """
    if not isinstance(arch, str):
        raise ValueError(f"an {space} arch must be a string, got {type(arch).__name__}")
    nodes = arch.split("+")
    if len(nodes) != NUM_NODES - 1:
        raise ValueError(
            f"malformed {space} arch {arch!r}: expected 3 '+'-separated nodes, got {len(nodes)}"
        )
    op_index = {name: index for index, name in enumerate(ops)}
    genotype = []
    for node, text in enumerate(nodes, start=1):
        entries = _NODE_PATTERN.findall(text)
        if not text.startswith("|") or not text.endswith("|") or (
            "".join(f"|{op}~{src}" for op, src in entries) + "|" != text
        ):
            raise ValueError(
                f"malformed {space} arch {arch!r}: node {node} part {text!r} is not of the "
                f"form '|op~i|...|'"
            )
        if len(entries) != node:
            raise ValueError(
                f"malformed {space} arch {arch!r}: node {node} part {text!r} must have {node} "
                f"inputs, got {len(entries)}"
            )
        for expected_source, (op, source) in enumerate(entries):
            if op not in op_index:
                raise ValueError(
                    f"malformed {space} arch {arch!r}: unknown op {op!r} in node {node}; "
                    f"valid ops: {', '.join(ops)}"
                )
            if int(source) != expected_source or source != str(expected_source):
                raise ValueError(
                    f"malformed {space} arch {arch!r}: node {node} input {expected_source} "
                    f"is written '~{source}'"
                )
            genotype.append(op_index[op])
    return np.asarray(genotype, np.int32)


def validate_cell_genotype(genotype, ops: Sequence[str], *, space: str) -> np.ndarray:
    """Check a concrete int genotype of an NB201-style cell; return it as int32 (6,)."""
    array = np.asarray(genotype)
    if array.shape != (NUM_EDGES,):
        raise ValueError(f"an {space} genotype has shape ({NUM_EDGES},), got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"an {space} genotype must be integers, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= len(ops):
        raise ValueError(f"{space} op indices are 0..{len(ops) - 1}, got {array.tolist()}")
    return array.astype(np.int32)


def decode_cell(genotype, ops: Sequence[str], *, space: str) -> str:
    """int genotype (6,) -> canonical arch string. Inverse of :func:`encode_cell`."""
    names = [ops[op] for op in validate_cell_genotype(genotype, ops, space=space)]
    parts, edge = [], 0
    for node in range(1, NUM_NODES):
        parts.append("|" + "|".join(f"{names[edge + i]}~{i}" for i in range(node)) + "|")
        edge += node
    return "+".join(parts)


def all_genotypes() -> np.ndarray:
    """All 15625 genotypes, (15625, 6) int32, in base-5 order (not the benchmark's index)."""
    digits = np.arange(NUM_ARCHS)[:, None] // (len(OPS) ** np.arange(NUM_EDGES - 1, -1, -1))
    return (digits % len(OPS)).astype(np.int32)


def sample(key: Array, num: int, *, replace: bool = False) -> np.ndarray:
    """``num`` genotypes drawn uniformly with a JAX key, (num, 6) int32."""
    indices = jax.random.choice(key, NUM_ARCHS, (num,), replace=replace)
    return all_genotypes()[np.asarray(indices)]


# ---------------------------------------------------------------------------
# Active network: parameter count and FLOPs (static, from the genotype)
# ---------------------------------------------------------------------------
def _stages(config: Config):
    """Yield the (channels, spatial size) of every stage."""
    size = config.image_size
    for stage, channels in enumerate(config.channels):
        if stage:
            size = (size - 1) // 2 + 1
        yield channels, size


def _cost_tables(config: Config) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Fixed parts and per-(stage, op) costs of one cell edge: params and FLOPs.

    NAS-Bench-201's conventions (``params`` = ``params_mb`` * 1e6; FLOPs as its
    ``get_model_infos`` counts them for one image): a conv counts ``H_out W_out C_out
    C_in k^2`` FLOPs, a linear layer ``in * out + out``, an average pool
    ``C H_out W_out k^2``; BatchNorm affine parameters count as parameters but no FLOPs.
    """
    first = config.channels[0]
    fixed_params = 3 * 3 * 3 * first + 2 * first  # stem conv + BN
    fixed_flops = config.image_size ** 2 * first * 3 * 9
    edge_params = np.zeros((len(config.channels), len(OPS)), np.int64)
    edge_flops = np.zeros((len(config.channels), len(OPS)), np.int64)
    previous = first
    for stage, (channels, size) in enumerate(_stages(config)):
        if stage:  # basic block: conv_a + BN, conv_b + BN, shortcut AvgPool2x2 + Conv1x1
            fixed_params += 9 * previous * channels + 9 * channels * channels + 4 * channels
            fixed_params += previous * channels
            fixed_flops += size * size * channels * (9 * previous + 9 * channels + previous)
            fixed_flops += size * size * previous * 4
        for op, kernel in CONV_OPS.items():
            edge_params[stage, op] = kernel ** 2 * channels * channels + 2 * channels
            edge_flops[stage, op] = size * size * channels * channels * kernel ** 2
        edge_flops[stage, OP_INDEX["avg_pool_3x3"]] = size * size * channels * 9
        previous = channels
    fixed_params += 2 * previous + previous * config.num_classes + config.num_classes
    fixed_flops += previous * config.num_classes + config.num_classes
    return fixed_params, fixed_flops, edge_params, edge_flops


def _edge_total(table: np.ndarray, genotype, cells_per_stage: int):
    """Sum over stages and edges of ``table[stage, op]``; NumPy or traced genotypes."""
    if isinstance(genotype, np.ndarray):
        return int(cells_per_stage * table[:, genotype].sum())
    return cells_per_stage * jnp.asarray(table, jnp.int32)[:, genotype].sum()


def _is_traced(genotype) -> bool:
    """An array tracer, or a tuple of per-edge tracers (:func:`edge_ops`)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(genotype))


def edge_ops(genotype) -> tuple[Array, ...]:
    """A traced genotype as one int32 scalar per edge.

    A tuple stays a tuple of separate values, so under ``vmap`` an edge whose op the whole
    batch shares keeps an unbatched index and ``lax.switch`` runs only that op, where a
    batched index turns it into a select over every candidate op (see
    :func:`zcjax.grouped.grouped_vmap`).
    """
    if isinstance(genotype, (tuple, list)):
        return tuple(jnp.asarray(op, jnp.int32) for op in genotype)
    genotype = jnp.asarray(genotype, jnp.int32)
    return tuple(genotype[edge] for edge in range(genotype.shape[0]))


def param_count(arch, config: Config = Config()) -> int:
    """Parameters of the network this architecture trains (conv, BN affine, linear).

    Counts what NAS-Bench-201's ``params`` counts (``params_mb`` * 1e6): the parameters of
    unused candidate ops never count. Accepts an arch string or a genotype; a traced
    genotype gives a traced int32.
    """
    genotype = jnp.asarray(arch, jnp.int32) if _is_traced(arch) else check_arch(arch)
    fixed, _, per_edge, _ = _cost_tables(config)
    return fixed + _edge_total(per_edge, genotype, config.cells_per_stage)


def flops(arch, config: Config = Config()) -> int:
    """FLOPs (multiply-accumulates) of one image through the active network.

    See :func:`_cost_tables` for the convention. Accepts an arch string or a genotype.
    """
    genotype = jnp.asarray(arch, jnp.int32) if _is_traced(arch) else check_arch(arch)
    _, fixed, _, per_edge = _cost_tables(config)
    return fixed + _edge_total(per_edge, genotype, config.cells_per_stage)


# ---------------------------------------------------------------------------
# The candidate ops as pure functions (switched per edge: zcjax.spaces.switch)
# ---------------------------------------------------------------------------
def op_functions(bn: nn.BatchNormMode, conv):
    """The candidate ops, in :data:`OPS` order, as ``(params, x, eps) -> (y, conv_output)``.

    ``eps`` is the zero perturbation added to the conv output (its gradient is the
    gradient w.r.t. that output); ops without a conv return a zero conv output.
    """

    def conv_op(kernel_name, bn_name):
        def op(params, x, eps):
            out = conv(jax.nn.relu(x), params[kernel_name]["kernel"], 1, params[kernel_name][
                "kernel"].shape[0] // 2) + eps
            scale, bias = params[bn_name]["scale"], params[bn_name]["bias"]
            return nn.batch_norm(out, scale.astype(x.dtype), bias.astype(x.dtype), bn), out

        return op

    def none(params, x, eps):
        return jnp.zeros_like(x), jnp.zeros_like(x)

    def skip(params, x, eps):
        return x, jnp.zeros_like(x)

    def pool(params, x, eps):
        return nn.avg_pool(x, 3, 1, 1), jnp.zeros_like(x)

    return (none, skip, conv_op("conv1x1", "bn1x1"), conv_op("conv3x3", "bn3x3"), pool)


# ---------------------------------------------------------------------------
# Flax modules
# ---------------------------------------------------------------------------
class EdgeParams(linen.Module):
    """The parameters of every candidate op of one edge, stacked over a stage's cells
    (``cells=None``: one unstacked set)."""

    channels: int
    cells: int | None

    @linen.compact
    def __call__(self):
        params = {}
        for op, size in CONV_OPS.items():
            params[f"conv{size}x{size}"] = {
                "kernel": nn.ConvParams(self.channels, self.channels, size, self.cells,
                                        name=f"conv{size}x{size}")()
            }
            scale, bias = nn.BatchNormParams(self.channels, self.cells, name=f"bn{size}x{size}")()
            params[f"bn{size}x{size}"] = {"scale": scale, "bias": bias}
        return params


EDGE_NAMES = tuple(f"edge_{target}_{source}" for target, source in EDGES)


def cell_forward(edges, params, x, genotype, eps):
    """One cell as a pure function.

    Args:
      edges: per edge (arch-string order), ``edge(op, edge_params, x, eps) -> (y, taps)``.
      params: ``{edge name: edge params}`` of this cell.
      x: the cell input (node 0).
      genotype: the 6 ops (traced ints or Python ints).
      eps: per edge, the zero perturbations of that edge's taps (indexable by edge).

    Returns:
      The output (node 3), the edges' taps (a list of 6; NB201's: the conv output) and
      nodes 0-2 (a list of 3), which the ReLUs of conv ops read.
    """
    nodes, taps = [x], []
    for index, (target, source) in enumerate(EDGES):
        y, edge_taps = edges[index](genotype[index], params[EDGE_NAMES[index]], nodes[source],
                                    eps[index])
        taps.append(edge_taps)
        if len(nodes) == target:  # the first edge into this node
            nodes.append(y)
        else:
            nodes[target] = nodes[target] + y
    return nodes[-1], taps, nodes[:-1]


class CellStack(linen.Module):
    """The cells of one stage: ``lax.scan`` over cells (compiled) or a Python loop.

    Scanning keeps one cell body in the compiled program instead of five, which cuts XLA
    compile time about fivefold; parameters are stacked on a leading cell axis. The
    candidate ops are ``OPS[:num_ops]`` (TransNAS-Bench-101 micro has NB201's first four).
    """

    channels: int
    cells: int
    bn: nn.BatchNormMode = "batch"
    compiled: bool = True
    num_ops: int = len(OPS)

    @linen.compact
    def __call__(self, x: Array, genotype) -> Array:
        params = {name: EdgeParams(self.channels, self.cells, name=name)() for name in EDGE_NAMES}
        params = jax.tree.map(lambda p: p.astype(x.dtype), params)
        eps = self.perturb("conv_out", jnp.zeros((self.cells, NUM_EDGES) + x.shape, x.dtype))
        if self.compiled:
            ops = op_functions(self.bn, nn.conv2d)[:self.num_ops]
            edges = [functools.partial(switched, ops)] * NUM_EDGES

            def step(carry, per_cell):
                y, conv_outputs, nodes = cell_forward(edges, per_cell[0], carry, genotype,
                                                      per_cell[1])
                return y, (jnp.stack(conv_outputs), jnp.stack(nodes))

            x, (conv_outputs, nodes) = jax.lax.scan(step, x, (params, eps))
        else:
            ops = op_functions(self.bn, nn.conv2d_reference)[:self.num_ops]
            edges = [lambda op, p, h, e: ops[op](p, h, e)] * NUM_EDGES
            per_cell = []
            for cell in range(self.cells):
                cell_params = jax.tree.map(lambda p: p[cell], params)
                x, *taps = cell_forward(edges, cell_params, x, genotype, eps[cell])
                per_cell.append([jnp.stack(t) for t in taps])
            conv_outputs, nodes = (jnp.stack(t) for t in zip(*per_cell))
        self.sow("intermediates", "conv_out", conv_outputs)
        # Each conv op on an edge leaving node i has its own ReLU reading node i.
        readers = jnp.stack([
            sum(is_conv(genotype[e]) for e, (_, s) in enumerate(EDGES) if s == source)
            for source in range(NUM_NODES - 1)
        ])
        readers = jnp.broadcast_to(readers, (self.cells, NUM_NODES - 1))
        # Every one of those ReLUs sits in a ReLUConvBN wrapper (see zcjax.network).
        self.sow("relu", "nodes", (nodes, readers, readers))
        return x


def is_conv(op):
    """1 where ``op`` is nor_conv_1x1 or nor_conv_3x3 (traced or concrete), else 0."""
    return jnp.asarray((op == OP_INDEX["nor_conv_1x1"]) | (op == OP_INDEX["nor_conv_3x3"]),
                       jnp.int32)


class ConvBN(linen.Module):
    """Conv (no bias) + BN with a tapped, perturbable conv output; optional leading ReLU."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    relu: bool = True
    bn: nn.BatchNormMode = "batch"
    compiled: bool = True

    @linen.compact
    def __call__(self, x: Array) -> Array:
        if self.relu:
            one = jnp.ones((), jnp.int32)
            self.sow("relu", "input", (x, one, one))  # the benchmark's ReLUConvBN
            x = jax.nn.relu(x)
        kernel = nn.ConvParams(self.in_channels, self.out_channels, self.kernel_size, name="conv")()
        conv = nn.conv2d if self.compiled else nn.conv2d_reference
        out = conv(x, kernel.astype(x.dtype), self.stride, self.kernel_size // 2)
        out = self.perturb("conv_out", out)
        self.sow("intermediates", "conv_out", out)
        scale, bias = nn.BatchNormParams(self.out_channels, name="bn")()
        return nn.batch_norm(out, scale.astype(x.dtype), bias.astype(x.dtype), self.bn)


class ResNetBlock(linen.Module):
    """NB201's ResNetBasicblock with stride 2 (the reduction between stages)."""

    in_channels: int
    out_channels: int
    bn: nn.BatchNormMode = "batch"
    compiled: bool = True

    @linen.compact
    def __call__(self, x: Array) -> Array:
        branch = ConvBN(self.in_channels, self.out_channels, 3, 2, bn=self.bn,
                        compiled=self.compiled, name="conv_a")(x)
        branch = ConvBN(self.out_channels, self.out_channels, 3, 1, bn=self.bn,
                        compiled=self.compiled, name="conv_b")(branch)
        kernel = nn.ConvParams(self.in_channels, self.out_channels, 1, name="shortcut")()
        conv = nn.conv2d if self.compiled else nn.conv2d_reference
        shortcut = conv(nn.avg_pool(x, 2, 2), kernel.astype(x.dtype))
        shortcut = self.perturb("shortcut_out", shortcut)
        self.sow("intermediates", "shortcut_out", shortcut)
        return shortcut + branch


class NB201Network(linen.Module):
    """The NAS-Bench-201 network; ``genotype`` is an int array or a tuple of Python ints."""

    config: Config = Config()
    bn: nn.BatchNormMode = "batch"
    reduction_bn: nn.BatchNormMode | None = None
    compiled: bool = True

    @linen.compact
    def __call__(self, images: Array, genotype) -> Array:
        config = self.config
        reduction_bn = self.bn if self.reduction_bn is None else self.reduction_bn
        x = ConvBN(3, config.channels[0], 3, relu=False, bn=self.bn, compiled=self.compiled,
                   name="stem")(images)
        previous = config.channels[0]
        for stage, channels in enumerate(config.channels):
            if stage:
                x = ResNetBlock(previous, channels, reduction_bn, self.compiled,
                                name=f"reduction_{stage}")(x)
            x = CellStack(channels, config.cells_per_stage, self.bn, self.compiled,
                          name=f"cells_{stage}")(x, genotype)
            previous = channels
        scale, bias = nn.BatchNormParams(previous, name="head_bn")()
        self.sow("features", "bn_input", x)
        x = nn.batch_norm(x, scale.astype(x.dtype), bias.astype(x.dtype), self.bn)
        self.sow("relu", "head", (x, jnp.ones((), jnp.int32), jnp.zeros((), jnp.int32)))
        x = jax.nn.relu(x)
        self.sow("features", "pre_gap", x)
        logits = nn.Dense(config.num_classes, name="classifier")(nn.global_avg_pool(x))
        logits = self.perturb("logits", logits)
        self.sow("intermediates", "logits", logits)
        return logits


# ---------------------------------------------------------------------------
# The layer table and the Network seam
# ---------------------------------------------------------------------------
class LayerTable:
    """Rows of a layer table with their (edge, op) selectors (edge -1: always active)."""

    def __init__(self):
        self.layers, self.edges, self.ops = [], [], []

    def add(self, name, kind, shape, param_path, output_path, edge=-1, op=-1, **fields):
        fields.setdefault("batch_norm", kind == "conv")
        self.layers.append(Layer(name, kind, tuple(shape), tuple(param_path),
                                 tuple(output_path), **fields))
        self.edges.append(edge)
        self.ops.append(op)

    def add_cell_stack(self, stack: str, cells: int, channels: int) -> None:
        """The candidate convs of every edge of a :class:`CellStack`'s scanned cells."""
        for cell in range(cells):
            for edge, edge_name in enumerate(EDGE_NAMES):
                for op, size in CONV_OPS.items():
                    conv = f"conv{size}x{size}"
                    self.add(f"{stack}/{cell}/{edge_name}/{conv}", "conv",
                             (size, size, channels, channels), (stack, edge_name, conv, "kernel"),
                             (stack, "conv_out"), edge, op, param_index=(cell,),
                             output_index=(cell, edge))

    def build(self) -> tuple[tuple[Layer, ...], np.ndarray, np.ndarray]:
        return tuple(self.layers), np.asarray(self.edges, np.int32), np.asarray(self.ops, np.int32)


def _layer_table(config: Config) -> tuple[tuple[Layer, ...], np.ndarray, np.ndarray]:
    """Layers in the reference network's module order, with (edge, op) selectors.

    Returns the layers and, per layer, the edge index whose op selects it (-1: always
    active) and the op value that activates it.
    """
    table = LayerTable()
    add = table.add

    first = config.channels[0]
    add("stem/conv", "conv", (3, 3, 3, first), ("stem", "conv", "kernel"), ("stem", "conv_out"))
    previous = first
    for stage, channels in enumerate(config.channels):
        if stage:
            block = f"reduction_{stage}"
            add(f"{block}/conv_a", "conv", (3, 3, previous, channels),
                (block, "conv_a", "conv", "kernel"), (block, "conv_a", "conv_out"))
            add(f"{block}/conv_b", "conv", (3, 3, channels, channels),
                (block, "conv_b", "conv", "kernel"), (block, "conv_b", "conv_out"))
            add(f"{block}/shortcut", "conv", (1, 1, previous, channels),
                (block, "shortcut", "kernel"), (block, "shortcut_out"), batch_norm=False)
        table.add_cell_stack(f"cells_{stage}", config.cells_per_stage, channels)
        previous = channels
    add("classifier", "linear", (previous, config.num_classes), ("classifier", "kernel"),
        ("logits",))
    return table.build()


@functools.lru_cache(maxsize=None)
def network(config: Config = Config()) -> Network:
    """The compiled-once NB201 network for ``config`` (see :class:`zcjax.network.Network`)."""
    return _make_network(config, compiled=True)


@functools.lru_cache(maxsize=None)
def reference_network(config: Config = Config()) -> Network:
    """The per-architecture reference: the same parameters, plain Python control flow.

    Its ``apply`` needs a concrete genotype (it is turned into Python ints), so jit it
    with the genotype static, i.e. one compilation per architecture.
    """
    return _make_network(config, compiled=False)


def _make_network(config: Config, *, compiled: bool) -> Network:
    layers, layer_edges, layer_ops = _layer_table(config)

    def init(key, images=None):
        if images is None:
            images = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)
        module = NB201Network(config, compiled=compiled)
        return {"params": module.init(key, images, jnp.zeros(NUM_EDGES, jnp.int32))["params"]}

    def apply(variables, genotype, images, *, bn="batch", reduction_bn=None, capture=False):
        if compiled:
            genotype = edge_ops(genotype)
        else:
            genotype = tuple(int(op) for op in validate_genotype(genotype))
        return apply_module(NB201Network(config, bn, reduction_bn, compiled), variables,
                            images, genotype, capture)

    return Network(
        space="nb201",
        layers=layers,
        init=init,
        apply=apply,
        active=edge_layers_active(layer_edges, layer_ops),
        param_count=functools.partial(param_count, config=config),
        flops=functools.partial(flops, config=config),
        num_classes=config.num_classes,
        image_size=config.image_size,
    )


def apply_module(module, variables, images, genotype, capture: bool):
    """``module.apply``, with the tap collections returned when ``capture``."""
    if not capture:
        return module.apply(variables, images, genotype)
    return module.apply(variables, images, genotype,
                        mutable=["intermediates", "relu", "features"])


def edge_layers_active(layer_edges: np.ndarray, layer_ops: np.ndarray):
    """``active(genotype)`` of a layer table whose layer l sits on edge ``layer_edges[l]``
    as op ``layer_ops[l]`` (edge -1: a layer every architecture uses)."""

    def active(genotype):
        genotype = jnp.asarray(genotype, jnp.int32)
        selected = genotype[np.maximum(layer_edges, 0)] == layer_ops
        return jnp.where(layer_edges < 0, True, selected)

    return active


def check_arch(arch_or_genotype) -> np.ndarray:
    """Arch string or int genotype -> validated int32 genotype."""
    if isinstance(arch_or_genotype, str):
        return encode(arch_or_genotype)
    return validate_genotype(arch_or_genotype)


def arch_strings(genotypes: Sequence) -> list[str]:
    """Decode many genotypes."""
    return [decode(g) for g in np.asarray(genotypes)]
