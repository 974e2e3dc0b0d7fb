"""The NB201-style cell that NB201, TransNAS-Bench-101 micro and DARTS build on (private).

A cell is a DAG on 4 nodes; node ``j`` is the sum over ``i < j`` of ``op_ij(node_i)`` and
the cell's output is node 3; one op per edge, edges in arch-string order (1<-0, 2<-0,
2<-1, 3<-0, 3<-1, 3<-2). Here: the codec of such cells (the arch string
``"|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"`` over any op list), the spaces of all op
combinations (enumeration, uniform sampling), the candidate ops (:data:`CELL_OPS`, a
space uses a prefix of them), the cell as a pure function, its parameters, the scanned
stack of cells, and the stack's rows of a layer table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from zcjax import nn
from zcjax.network import BLOCK_PERTURBATIONS, BLOCKS, Block
from zcjax.spaces._network import LayerTable, SpaceModule
from zcjax.spaces.switch import switched

Array = jax.Array

CELL_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CONV_OPS = {CELL_OPS.index("nor_conv_1x1"): 1, CELL_OPS.index("nor_conv_3x3"): 3}  # -> kernel
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), arch-string order
EDGE_NAMES = tuple(f"edge_{target}_{source}" for target, source in EDGES)
NUM_EDGES = len(EDGES)
NUM_NODES = 4

_NODE_PATTERN = re.compile(r"\|([^|~]+)~([0-9]+)")


# ---------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------
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


def all_cell_genotypes(num_ops: int) -> np.ndarray:
    """All ``num_ops ** 6`` genotypes, (num_ops ** 6, 6) int32, in base-``num_ops`` order."""
    places = num_ops ** np.arange(NUM_EDGES - 1, -1, -1)
    return (np.arange(num_ops ** NUM_EDGES)[:, None] // places % num_ops).astype(np.int32)


def sample_cells(key: Array, num: int, num_ops: int, *, replace: bool = False) -> np.ndarray:
    """``num`` genotypes drawn uniformly with a JAX key, (num, 6) int32."""
    indices = jax.random.choice(key, num_ops ** NUM_EDGES, (num,), replace=replace)
    return all_cell_genotypes(num_ops)[np.asarray(indices)]


def mutate_cell(genotype, rng: np.random.Generator, ops: Sequence[str], *,
                space: str) -> np.ndarray:
    """NASLib's NB201 mutation: one edge, drawn uniformly, takes another op, drawn uniformly.

    Every cell genotype is valid, so the child always is; it differs from the parent in
    exactly one edge.
    """
    child = validate_cell_genotype(genotype, ops, space=space).copy()
    edge = int(rng.integers(NUM_EDGES))
    child[edge] = (child[edge] + int(rng.integers(1, len(ops)))) % len(ops)
    return child


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


# ---------------------------------------------------------------------------
# The candidate ops as pure functions (switched per edge: zcjax.spaces.switch)
# ---------------------------------------------------------------------------
def op_functions(bn: nn.BatchNormMode, conv):
    """The candidate ops, in :data:`CELL_OPS` order, as ``(params, x, eps) -> (y, conv_output)``.

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


def is_conv(op):
    """1 where ``op`` is nor_conv_1x1 or nor_conv_3x3 (traced or concrete), else 0."""
    return jnp.asarray((op == CELL_OPS.index("nor_conv_1x1"))
                       | (op == CELL_OPS.index("nor_conv_3x3")), jnp.int32)


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


class CellStack(SpaceModule):
    """The cells of one stage: ``lax.scan`` over cells (compiled) or a Python loop.

    Scanning keeps one cell body in the compiled program instead of five, which cuts XLA
    compile time about fivefold; parameters are stacked on a leading cell axis. The
    candidate ops are ``CELL_OPS[:num_ops]`` (TransNAS-Bench-101 micro has the first four).
    """

    channels: int
    cells: int
    num_ops: int = len(CELL_OPS)

    @linen.compact
    def __call__(self, x: Array, genotype) -> Array:
        params = {name: EdgeParams(self.channels, self.cells, name=name)() for name in EDGE_NAMES}
        params = jax.tree.map(lambda p: p.astype(x.dtype), params)
        eps = self.perturb("conv_out", jnp.zeros((self.cells, NUM_EDGES) + x.shape, x.dtype))
        # Each cell is a block: its input perturbable and, when isolating, cut off.
        input_eps = self.perturb("input", jnp.zeros((self.cells,) + x.shape, x.dtype),
                                 collection=BLOCK_PERTURBATIONS)
        cut = jax.lax.stop_gradient if self.isolate_blocks else (lambda h: h)
        ops = op_functions(self.bn, self.conv)[:self.num_ops]
        if self.compiled:
            edges = [functools.partial(switched, ops)] * NUM_EDGES

            def step(carry, per_cell):
                cell_params, cell_eps, cell_input_eps = per_cell
                cell_input = cut(carry) + cell_input_eps
                y, conv_outputs, nodes = cell_forward(edges, cell_params, cell_input, genotype,
                                                      cell_eps)
                return y, (jnp.stack(conv_outputs), jnp.stack(nodes), cell_input, y)

            x, (conv_outputs, nodes, inputs, outputs) = jax.lax.scan(
                step, x, (params, eps, input_eps))
        else:
            edges = [lambda op, p, h, e: ops[op](p, h, e)] * NUM_EDGES
            per_cell = []
            for cell in range(self.cells):
                cell_params = jax.tree.map(lambda p: p[cell], params)
                cell_input = cut(x) + input_eps[cell]
                x, *taps = cell_forward(edges, cell_params, cell_input, genotype, eps[cell])
                per_cell.append([jnp.stack(t) for t in taps] + [cell_input, x])
            conv_outputs, nodes, inputs, outputs = (jnp.stack(t) for t in zip(*per_cell))
        self.sow(BLOCKS, "input", inputs)
        self.sow(BLOCKS, "output", outputs)
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


def cell_stack_blocks(stack: str, cells: int) -> list[Block]:
    """The blocks of a :class:`CellStack`: one per cell."""
    return [Block(f"{stack}/{cell}", (stack, "output"), (cell,), (stack, "input"), (cell,))
            for cell in range(cells)]


def add_cell_stack(table: LayerTable, stack: str, cells: int, channels: int) -> None:
    """The candidate convs of every edge of a :class:`CellStack`'s scanned cells."""
    for cell in range(cells):
        for edge, edge_name in enumerate(EDGE_NAMES):
            for op, size in CONV_OPS.items():
                conv = f"conv{size}x{size}"
                table.add(f"{stack}/{cell}/{edge_name}/{conv}", "conv",
                          (size, size, channels, channels), (stack, edge_name, conv, "kernel"),
                          (stack, "conv_out"), edge, op, param_index=(cell,),
                          output_index=(cell, edge))
