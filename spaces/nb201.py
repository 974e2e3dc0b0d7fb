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

import ast
import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from zcjax import nn
from zcjax.network import Block, Layer, Network
from zcjax.space import SearchSpace
from zcjax.spaces import _cell
from zcjax.spaces._cell import CONV_OPS, EDGES, NUM_EDGES, edge_ops
from zcjax.spaces._network import ConvBN, LayerTable, SpaceModule, edge_layers_active, make_network

Array = jax.Array

OPS = _cell.CELL_OPS  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
OP_INDEX = {name: index for index, name in enumerate(OPS)}
NUM_ARCHS = len(OPS) ** NUM_EDGES
# NASLib's NB201 encoding (naslib/search_spaces/nasbench201/conversions.py): op index ->
# name, and the edge of each of its 6 positions as (from, to) on nodes 1..4.
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_EDGES = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))
# Per genotype edge (to, from) on nodes 0..3, its NASLib position (from + 1, to + 1).
_NASLIB_POSITIONS = tuple(NASLIB_EDGES.index((source + 1, target + 1))
                          for target, source in EDGES)


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
    return _cell.encode_cell(arch, OPS, space="NB201")


def validate_genotype(genotype) -> np.ndarray:
    """Check a concrete int genotype; return it as int32 (6,)."""
    return _cell.validate_cell_genotype(genotype, OPS, space="NB201")


def decode(genotype) -> str:
    """int genotype (6,) -> canonical arch string. Inverse of :func:`encode`."""
    return _cell.decode_cell(genotype, OPS, space="NB201")


def check_arch(arch_or_genotype) -> np.ndarray:
    """Arch string or int genotype -> validated int32 genotype."""
    if isinstance(arch_or_genotype, str):
        return encode(arch_or_genotype)
    return validate_genotype(arch_or_genotype)


def mutate(genotype, rng: np.random.Generator) -> np.ndarray:
    """One edge takes another op (NASLib's mutation; :func:`zcjax.spaces._cell.mutate_cell`)."""
    return _cell.mutate_cell(genotype, rng, OPS, space="NB201")


def arch_strings(genotypes: Sequence) -> list[str]:
    """Decode many genotypes."""
    return [decode(g) for g in np.asarray(genotypes)]


def from_naslib(key) -> np.ndarray:
    """NASLib's NAS-Bench-201 op indices -> genotype.

    NASLib encodes a cell as 6 op indices, one per edge in the order (1,2), (1,3), (1,4),
    (2,3), (2,4), (3,4) (``(from, to)``, nodes numbered 1..4, node 1 the cell input), with
    ops 0=skip_connect, 1=none, 2=nor_conv_3x3, 3=nor_conv_1x1, 4=avg_pool_3x3
    (:data:`NASLIB_OPS`, :data:`NASLIB_EDGES`; naslib/search_spaces/nasbench201/
    conversions.py). The arch string lists node j's inputs per node, i.e. the edges (1,2)
    | (1,3) (2,3) | (1,4) (2,4) (3,4), so NASLib position p is genotype position
    ``[0, 1, 3, 2, 4, 5][p]``. For example ``(4, 3, 3, 0, 0, 0)`` (NB201 index 0) is::

        |avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+
        |nor_conv_1x1~0|skip_connect~1|skip_connect~2|      (one string)

    (Checked against the ``naslib_op_indices`` column of the NB201 CSV on all 15625 rows.)

    Args:
      key: the Suite-Zero JSON key ``"(4, 3, 3, 0, 0, 0)"``, a 6-digit string ``"433000"``
        (the CSV's ``naslib_op_indices``), or a sequence of 6 ints.

    Raises:
      ValueError: not 6 op indices in 0..4.
    """
    if isinstance(key, str):
        text = key.strip()
        if text.isdigit():
            ops = [int(c) for c in text]
        else:
            try:
                ops = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(f"not a NASLib NB201 key: {key!r}") from None
    else:
        ops = key
    try:
        ops = [int(op) for op in ops]
    except (TypeError, ValueError):
        raise ValueError(f"not a NASLib NB201 key: {key!r}") from None
    if len(ops) != len(NASLIB_EDGES) or not all(0 <= op < len(NASLIB_OPS) for op in ops):
        raise ValueError(f"a NASLib NB201 key is 6 op indices in 0..4, got {key!r}")
    return np.asarray([OP_INDEX[NASLIB_OPS[ops[position]]] for position in _NASLIB_POSITIONS],
                      np.int32)


def to_naslib(genotype) -> str:
    """Genotype -> NASLib's key ``"(a, b, c, d, e, f)"``. Inverse of :func:`from_naslib`."""
    genotype = validate_genotype(genotype)
    ops = [0] * NUM_EDGES
    for edge, position in enumerate(_NASLIB_POSITIONS):
        ops[position] = NASLIB_OPS.index(OPS[genotype[edge]])
    return str(tuple(ops))


def all_genotypes() -> np.ndarray:
    """All 15625 genotypes, (15625, 6) int32, in base-5 order (not the benchmark's index)."""
    return _cell.all_cell_genotypes(len(OPS))


def sample(key: Array, num: int, *, replace: bool = False) -> np.ndarray:
    """``num`` genotypes drawn uniformly with a JAX key, (num, 6) int32."""
    return _cell.sample_cells(key, num, len(OPS), replace=replace)


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


class ResNetBlock(SpaceModule):
    """NB201's ResNetBasicblock with stride 2 (the reduction between stages)."""

    in_channels: int
    out_channels: int

    @linen.compact
    def __call__(self, x: Array) -> Array:
        x = self.block_input(x)
        branch = ConvBN(self.in_channels, self.out_channels, 3, 2, bn=self.bn,
                        compiled=self.compiled, name="conv_a")(x)
        branch = ConvBN(self.out_channels, self.out_channels, 3, 1, bn=self.bn,
                        compiled=self.compiled, name="conv_b")(branch)
        kernel = nn.ConvParams(self.in_channels, self.out_channels, 1, name="shortcut")()
        shortcut = self.conv(nn.avg_pool(x, 2, 2), kernel.astype(x.dtype))
        shortcut = self.perturb("shortcut_out", shortcut)
        self.sow("intermediates", "shortcut_out", shortcut)
        return self.block_output(shortcut + branch)


class NB201Network(SpaceModule):
    """The NAS-Bench-201 network; ``genotype`` is an int array or a tuple of Python ints."""

    config: Config = Config()
    reduction_bn: nn.BatchNormMode | None = None

    @linen.compact
    def __call__(self, images: Array, genotype) -> Array:
        config = self.config
        reduction_bn = self.bn if self.reduction_bn is None else self.reduction_bn
        x = ConvBN(3, config.channels[0], 3, relu=False, bn=self.bn, compiled=self.compiled,
                   name="stem")(images)
        x = self.block_output(x, "stem_output")
        previous = config.channels[0]
        for stage, channels in enumerate(config.channels):
            if stage:
                x = ResNetBlock(previous, channels, bn=reduction_bn, compiled=self.compiled,
                                isolate_blocks=self.isolate_blocks, name=f"reduction_{stage}")(x)
            x = _cell.CellStack(channels, config.cells_per_stage, bn=self.bn,
                                compiled=self.compiled, isolate_blocks=self.isolate_blocks,
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
def _blocks(config: Config) -> tuple[Block, ...]:
    """The stem, then per stage its reduction block (after the first) and its cells: the
    modules of TinyNetwork's ``cells`` list, in order."""
    blocks = [Block("stem", ("stem_output",))]
    for stage in range(len(config.channels)):
        if stage:
            block = f"reduction_{stage}"
            blocks.append(Block(block, (block, "output"), input_path=(block, "input")))
        blocks += _cell.cell_stack_blocks(f"cells_{stage}", config.cells_per_stage)
    return tuple(blocks)


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
        _cell.add_cell_stack(table, f"cells_{stage}", config.cells_per_stage, channels)
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
    return make_network(
        space="nb201", config=config, compiled=compiled, module=NB201Network,
        reduction_bn=True,
        init_genotype=jnp.zeros(NUM_EDGES, jnp.int32),
        traced=edge_ops,
        concrete=lambda genotype: tuple(int(op) for op in validate_genotype(genotype)),
        layers=layers, active=edge_layers_active(layer_edges, layer_ops),
        param_count=param_count, flops=flops, blocks=_blocks(config))


SPACE = SearchSpace(
    name="nb201", Config=Config, num_archs=NUM_ARCHS,
    encode=encode, decode=decode, check_arch=check_arch, arch_strings=arch_strings,
    sample=sample, network=network, reference_network=reference_network,
    param_count=param_count, flops=flops,
    all_genotypes=all_genotypes, mutate=mutate, edge_ops=edge_ops,
    from_naslib=from_naslib, to_naslib=to_naslib, naslib_name="nasbench201",
)
