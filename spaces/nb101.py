"""NAS-Bench-101.

A cell is a DAG on at most 7 vertices given by an upper-triangular 0/1 adjacency matrix
and one op per vertex: vertex 0 is the cell input, vertex 6 the output, and each interior
vertex is ``conv3x3-bn-relu``, ``conv1x1-bn-relu`` or ``maxpool3x3`` (3x3, stride 1) applied
to the sum of its inputs. The network is the one the benchmark trained (google-research
``nasbench/lib/model_builder.py``; NASLib's and foresight's PyTorch ``nasbench1`` model):

    stem  Conv3x3(3 -> 128) - BN - ReLU
    stack 0: 3 cells at 128 | MaxPool 2x2 stride 2
    stack 1: 3 cells at 256 | MaxPool 2x2 stride 2
    stack 2: 3 cells at 512
    head  global average pool - Linear(512 -> num_classes)

(the max pools floor odd sizes, as PyTorch's; the benchmark's TensorFlow ``same`` pooling
would round up; the two agree on even sizes, e.g. 32 -> 16 -> 8).

Inside a cell (``C`` its output channels): the graph is first pruned of vertices not on an
input->output path (the benchmark's ``ModelSpec._prune``); the ``k`` vertices feeding the
output get ``C // k`` channels (the first ``C % k`` of them one more), every other vertex
the largest count among its successors (``compute_vertex_channels``). The cell input
reaches a vertex through its own 1x1 Conv-BN-ReLU projection; an interior edge passes the
tensor on, truncated to the receiving vertex's channels; a vertex sums its inputs; the
output concatenates the vertices feeding it and adds the input's projection when
input->output is an edge (or is that projection alone when no vertex feeds it). Convs have
no bias, BatchNorms are affine, and the init is PyTorch's default (as in
:mod:`zcjax.spaces.nb201`; NASLib's model re-initialises with He-normal convs).

Genotype: the 56 integers of NASLib's NAS-Bench-Suite-Zero keys, an int32 array: the
row-major 7x7 adjacency matrix, then the 7 vertex op codes of :data:`OPS` (0 input,
1 output, 2 maxpool3x3, 3 conv1x1-bn-relu, 4 conv3x3-bn-relu). The string form is that
tuple's Python repr, ``"(0, 1, 1, ..., 4, 1)"``, exactly the keys of NASLib's
``zc_nasbench101.json``. The genotype is kept unpruned (so strings round-trip); the
network is built from the pruned graph.

Compilation: channel counts (so parameter shapes) depend on the pruned graph, so one
program cannot serve every architecture. The shapes are fixed by a :class:`Signature`:
which interior vertices of the pruned cell feed the output, and every interior vertex's
channel count in each stack. :func:`network` compiles one network per signature; in it,
the interior edges, the input projections and the vertex ops are data (``lax.switch``
over the three ops, as NB201's edges), so every architecture with that signature shares
one compiled program; the same-shaped cells of a stack run under one ``lax.scan`` (5
cell bodies in the program instead of 9). The 500 archs of NAS-Bench-Suite-Zero have 20
signatures (162 distinct pruned matrices), so :func:`zcjax.make_scorer`, which keeps one
compiled scorer per signature, compiles 20 times for them instead of 500. Measured on
this project's 2-core CPU (shared, heavily loaded), batch 64, snip + synflow + naswot: a
signature's first architecture takes 24-77 s (compile and run), each further one 4-12 s;
a compiled signature runs as fast as the per-architecture module, whose compilation
alone takes about as long (loss gradients: 17 s vs 22 s for the signature's).
:func:`reference_network` is the plain per-architecture module.

There is no ``all_genotypes``: the benchmark's 423,624 unique models are listed only in
its own data file (by graph hash); draw architectures with :func:`sample` or convert the
benchmark's specs with :func:`from_spec`.

References:
  Ying et al., "NAS-Bench-101: Towards Reproducible Neural Architecture Search",
  ICML 2019. Krishnakumar et al., "NAS-Bench-Suite-Zero", NeurIPS 2022 (Datasets and
  Benchmarks).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from zcjax import initialisation, nn
from zcjax.network import BLOCK_PERTURBATIONS, BLOCKS, Block, Layer, Network
from zcjax.space import SearchSpace
from zcjax.spaces._network import SpaceModule, apply_module
from zcjax.spaces.ops import max_pool
from zcjax.spaces.switch import switched

Array = jax.Array

# NASLib's op codes (``all_ops``), the benchmark's op names.
OPS = ("input", "output", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu")
OP_INDEX = {name: code for code, name in enumerate(OPS)}
INPUT, OUTPUT, MAXPOOL, CONV1X1, CONV3X3 = range(len(OPS))
VERTEX_OPS = (MAXPOOL, CONV1X1, CONV3X3)  # lax.switch branch = code - MAXPOOL
CONV_KERNEL = {CONV1X1: 1, CONV3X3: 3}
NUM_VERTICES = 7
MAX_EDGES = 9
GENOTYPE_SIZE = NUM_VERTICES * NUM_VERTICES + NUM_VERTICES  # 56
NUM_ARCHS = 423_624  # the benchmark's unique (non-isomorphic) models

_TUPLE_PATTERN = re.compile(r"\(\s*(-?\d+\s*(?:,\s*-?\d+\s*)*),?\s*\)")


@dataclasses.dataclass(frozen=True)
class Config:
    """Network shape. The benchmark's is the default; tests use smaller ones."""

    stem_channels: int = 128
    stacks: int = 3
    cells_per_stack: int = 3
    num_classes: int = 10
    image_size: int = 32


class Signature(NamedTuple):
    """What fixes the shapes of an architecture's network (one compilation each).

    Attributes:
      to_output: per interior vertex of the pruned cell, whether it feeds the output.
      channels: per stack, per interior vertex of the pruned cell, its channel count.
    """

    to_output: tuple[bool, ...]
    channels: tuple[tuple[int, ...], ...]

    @property
    def num_vertices(self) -> int:
        """Vertices of the pruned cell, input and output included."""
        return len(self.to_output) + 2


# ---------------------------------------------------------------------------
# Graph utilities (NumPy or jax.numpy, so the compiled network prunes traced genotypes)
# ---------------------------------------------------------------------------
def _reachable(matrix, xp=np):
    """Boolean (V, V): whether a directed path (possibly empty) leads from i to j."""
    size = matrix.shape[-1]
    reach = (xp.asarray(matrix) != 0) | xp.eye(size, dtype=bool)
    for _ in range(int(np.ceil(np.log2(size)))):  # squaring covers paths of any length
        counts = reach.astype(xp.int32) @ reach.astype(xp.int32)
        reach = counts > 0
    return reach


def _kept(matrix, xp=np):
    """Vertices on some input->output path (the benchmark's ``_prune`` keeps these)."""
    reach = _reachable(matrix, xp)
    return reach[0] & reach[:, -1]


def _split(genotype, xp=np):
    genotype = xp.asarray(genotype)
    return genotype[:NUM_VERTICES ** 2].reshape(NUM_VERTICES, NUM_VERTICES), \
        genotype[NUM_VERTICES ** 2:]


def _pruned_arrays(genotype):
    """Concrete genotype -> pruned (matrix (n, n), op codes (n,)) as NumPy ints."""
    matrix, ops = _split(np.asarray(genotype))
    kept = np.flatnonzero(_kept(matrix))
    return matrix[np.ix_(kept, kept)], ops[kept]


def _pruned_traced(genotype, num_vertices: int):
    """The same on a traced genotype; ``num_vertices`` (static) comes from the signature."""
    matrix, ops = _split(genotype, jnp)
    (kept,) = jnp.nonzero(_kept(matrix, jnp), size=num_vertices)  # ascending: output last
    return matrix[kept][:, kept], ops[kept]


def compute_vertex_channels(in_channels: int, out_channels: int, matrix) -> list[int]:
    """Channels of every vertex of a pruned cell (the benchmark's function of that name).

    The vertices feeding the output share ``out_channels`` (the first ``out_channels % k``
    get one extra); every other interior vertex takes the largest count among the vertices
    it feeds; vertex 0 has ``in_channels``.
    """
    matrix = np.asarray(matrix)
    size = matrix.shape[0]
    channels = [0] * size
    channels[0], channels[-1] = in_channels, out_channels
    if size == 2:
        return channels
    feeding = int(matrix[1:, -1].sum())
    share, extra = divmod(out_channels, feeding)
    for vertex in range(1, size - 1):
        if matrix[vertex, -1]:
            channels[vertex] = share + (1 if extra > 0 else 0)
            extra -= 1
    for vertex in range(size - 3, 0, -1):
        if not matrix[vertex, -1]:
            channels[vertex] = max(channels[dst] for dst in range(vertex + 1, size - 1)
                                   if matrix[vertex, dst])
    return channels


# ---------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------
def validate_genotype(genotype) -> np.ndarray:
    """Check a concrete genotype against the benchmark's rules; return it as int32 (56,).

    Raises:
      ValueError: naming the first problem: shape, dtype, a matrix entry that is not 0/1
        or lies on or below the diagonal, a misplaced input/output op or an unknown
        interior op, an input not connected to the output, or more than 9 edges after
        pruning (the benchmark counts the pruned graph's edges, as NASLib's sampler does:
        many NAS-Bench-Suite-Zero keys have 10-12 edges before pruning).
    """
    array = np.asarray(genotype)
    if array.shape != (GENOTYPE_SIZE,):
        raise ValueError(
            f"an NB101 genotype has shape ({GENOTYPE_SIZE},) (7x7 adjacency matrix, then 7 "
            f"op codes), got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"an NB101 genotype must be integers, got dtype {array.dtype}")
    matrix, ops = _split(array)
    if not np.isin(matrix, (0, 1)).all():
        raise ValueError("NB101 adjacency entries must be 0 or 1, got "
                         f"{sorted(set(matrix.ravel().tolist()))}")
    below = np.argwhere(np.tril(matrix) != 0)
    if len(below):
        raise ValueError(
            "an NB101 adjacency matrix must be strictly upper triangular (edges go from a "
            f"lower to a higher vertex); entries on or below the diagonal at "
            f"{[tuple(int(i) for i in entry) for entry in below]}")
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        raise ValueError(f"NB101 vertex 0 must be the input (op {INPUT}) and vertex 6 the output "
                         f"(op {OUTPUT}), got ops {ops.tolist()}")
    for vertex, op in enumerate(ops[1:-1], start=1):
        if op not in VERTEX_OPS:
            raise ValueError(
                f"NB101 vertex {vertex} has op code {op}; interior ops are "
                + ", ".join(f"{code}={OPS[code]}" for code in VERTEX_OPS))
    if not _kept(matrix)[0]:
        raise ValueError("NB101 cell: the input is not connected to the output")
    pruned, _ = _pruned_arrays(array)
    if pruned.sum() > MAX_EDGES:
        raise ValueError(f"NB101 cell has {int(pruned.sum())} edges after pruning; the "
                         f"benchmark allows at most {MAX_EDGES}")
    return array.astype(np.int32)


def from_spec(matrix, ops: Sequence) -> np.ndarray:
    """The benchmark's ``ModelSpec(matrix, ops)`` -> genotype.

    Args:
      matrix: (n, n) 0/1 upper-triangular adjacency, 2 <= n <= 7. A matrix smaller than
        7x7 (the benchmark's pruned ``module_adjacency``) is padded as NASLib does: its
        last vertex becomes vertex 6 and the padding vertices are isolated
        ``conv3x3-bn-relu`` ones (pruned away again).
      ops: n op names of :data:`OPS` (``"input"``, ..., ``"output"``) or op codes.

    Raises:
      ValueError: a malformed matrix or op list, or an invalid cell (see
        :func:`validate_genotype`).
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"an NB101 adjacency matrix must be square, got shape {matrix.shape}")
    size = matrix.shape[0]
    if not 2 <= size <= NUM_VERTICES:
        raise ValueError(f"an NB101 cell has 2 to {NUM_VERTICES} vertices, got {size}")
    if not np.isin(matrix, (0, 1)).all():
        raise ValueError(f"NB101 adjacency entries must be 0 or 1, got {matrix.tolist()}")
    ops = list(ops)
    if len(ops) != size:
        raise ValueError(f"an NB101 cell with a {size}x{size} matrix needs {size} ops, "
                         f"got {len(ops)}")
    codes = []
    for vertex, op in enumerate(ops):
        if isinstance(op, str):
            if op not in OP_INDEX:
                raise ValueError(f"NB101 vertex {vertex} has unknown op {op!r}; valid ops: "
                                 f"{', '.join(OPS)}")
            codes.append(OP_INDEX[op])
        elif isinstance(op, (int, np.integer)) and 0 <= op < len(OPS):
            codes.append(int(op))
        else:
            raise ValueError(f"NB101 vertex {vertex} has op {op!r}; give one of {OPS} or "
                             "its code")
    padded = np.zeros((NUM_VERTICES, NUM_VERTICES), np.int64)
    rows = list(range(size - 1)) + [NUM_VERTICES - 1]  # the last vertex becomes the output
    padded[np.ix_(rows, rows)] = matrix.astype(np.int64)
    padded_ops = codes[:-1] + [CONV3X3] * (NUM_VERTICES - size) + codes[-1:]
    return validate_genotype(np.concatenate([padded.ravel(), padded_ops]))


def to_spec(arch, *, prune: bool = True) -> tuple[np.ndarray, list[str]]:
    """Arch string or genotype -> the benchmark's ``(matrix, ops)``.

    With ``prune`` (default), the pruned graph the benchmark builds and hashes (what
    ``ModelSpec(...).matrix`` / ``.ops`` hold); otherwise the full 7-vertex one.
    """
    genotype = check_arch(arch)
    matrix, ops = _pruned_arrays(genotype) if prune else _split(genotype)
    return matrix.astype(np.int64), [OPS[op] for op in ops]


def encode(arch: str) -> np.ndarray:
    """NASLib tuple string ``"(0, 1, ..., 4, 1)"`` -> int32 genotype (56,).

    Raises:
      ValueError: not a parenthesised list of 56 integers, or an invalid cell.
    """
    if not isinstance(arch, str):
        raise ValueError(f"an NB101 arch must be a string, got {type(arch).__name__}")
    match = _TUPLE_PATTERN.fullmatch(arch.strip())
    if match is None:
        raise ValueError(f"malformed NB101 arch {arch!r}: expected a tuple of {GENOTYPE_SIZE} "
                         "integers '(0, 1, ..., 1)' (7x7 adjacency matrix, then 7 op codes)")
    values = [int(value) for value in match.group(1).split(",")]
    if len(values) != GENOTYPE_SIZE:
        raise ValueError(f"malformed NB101 arch {arch!r}: expected {GENOTYPE_SIZE} integers, "
                         f"got {len(values)}")
    return validate_genotype(np.asarray(values, np.int64))


def decode(genotype) -> str:
    """int genotype (56,) -> canonical arch string (the NASLib key). Inverse of :func:`encode`."""
    return "(" + ", ".join(str(int(v)) for v in validate_genotype(genotype)) + ")"


def check_arch(arch_or_genotype) -> np.ndarray:
    """Arch string, ``(matrix, ops)`` spec (pair or dict) or genotype -> validated genotype."""
    if isinstance(arch_or_genotype, str):
        return encode(arch_or_genotype)
    if isinstance(arch_or_genotype, dict):
        return from_spec(arch_or_genotype["matrix"], arch_or_genotype["ops"])
    if isinstance(arch_or_genotype, (tuple, list)) and len(arch_or_genotype) == 2:
        return from_spec(*arch_or_genotype)
    return validate_genotype(arch_or_genotype)


def mutate(genotype, rng: np.random.Generator) -> np.ndarray:
    """One change that yields another valid cell, as NAS-Bench-101's own example mutates.

    Each draw either flips one upper-triangular adjacency entry or gives one interior
    vertex another op (uniformly over the 21 entries and 5 vertices); a draw is kept when
    the result is a valid cell whose pruned graph (what the benchmark trains) differs from
    the parent's, otherwise it is drawn again.
    """
    parent = validate_genotype(genotype)
    before = _pruned_arrays(parent)
    rows, columns = np.triu_indices(NUM_VERTICES, 1)
    while True:
        child = parent.copy()
        change = int(rng.integers(len(rows) + NUM_VERTICES - 2))
        if change < len(rows):
            child[rows[change] * NUM_VERTICES + columns[change]] ^= 1
        else:
            vertex = NUM_VERTICES ** 2 + 1 + change - len(rows)
            others = [op for op in VERTEX_OPS if op != child[vertex]]
            child[vertex] = others[int(rng.integers(len(others)))]
        try:
            validate_genotype(child)
        except ValueError:
            continue
        after = _pruned_arrays(child)
        if before[0].shape != after[0].shape or not all(
                np.array_equal(a, b) for a, b in zip(before, after)):
            return child


def arch_strings(genotypes: Sequence) -> list[str]:
    """Decode many genotypes."""
    return [decode(g) for g in np.asarray(genotypes)]


def sample(key: Array, num: int, *, replace: bool = False) -> np.ndarray:
    """``num`` valid genotypes drawn with a JAX key, (num, 56) int32.

    The benchmark's (and NASLib's) random-spec distribution: every upper-triangular
    entry is 1 with probability 1/2 and every interior op uniform over the three, redrawn
    until the cell is valid. This is not uniform over the 423,624 isomorphism classes.
    Without ``replace`` no genotype repeats (isomorphic cells may).
    """
    chosen: list[np.ndarray] = []
    seen: set[bytes] = set()
    upper = np.triu(np.ones((NUM_VERTICES, NUM_VERTICES), bool), 1)
    draw = 0
    while len(chosen) < num:
        edge_key, op_key = jax.random.split(jax.random.fold_in(key, draw))
        draw += 1
        batch = max(4 * (num - len(chosen)), 64)
        edges = np.asarray(jax.random.bernoulli(edge_key, 0.5, (batch, NUM_VERTICES, NUM_VERTICES)))
        ops = np.asarray(jax.random.choice(op_key, np.asarray(VERTEX_OPS),
                                           (batch, NUM_VERTICES - 2)))
        for matrix, interior in zip(edges & upper, ops):
            genotype = np.concatenate([matrix.ravel().astype(np.int32),
                                       [INPUT], interior.astype(np.int32), [OUTPUT]])
            if not _kept(matrix)[0] or _pruned_arrays(genotype)[0].sum() > MAX_EDGES:
                continue
            if not replace:
                if genotype.tobytes() in seen:
                    continue
                seen.add(genotype.tobytes())
            chosen.append(genotype.astype(np.int32))
            if len(chosen) == num:
                break
    return np.stack(chosen)


# ---------------------------------------------------------------------------
# Signatures, parameter counts and FLOPs
# ---------------------------------------------------------------------------
def _stack_shapes(config: Config):
    """Per stack: (output channels, spatial size); channels double, size halves."""
    channels, size = config.stem_channels, config.image_size
    for stack in range(config.stacks):
        if stack:
            channels, size = channels * 2, size // 2  # MaxPool2d(2, 2) floors
        yield channels, size


def _cells(config: Config):
    """Per cell: (stack, cell, input channels, output channels, spatial size)."""
    previous = config.stem_channels
    for stack, (channels, size) in enumerate(_stack_shapes(config)):
        for cell in range(config.cells_per_stack):
            yield stack, cell, previous, channels, size
            previous = channels


def signature(arch, config: Config = Config()) -> Signature:
    """The shape signature of an architecture's network under ``config``."""
    matrix, _ = _pruned_arrays(check_arch(arch))
    to_output = tuple(bool(v) for v in matrix[1:-1, -1])
    channels = tuple(tuple(compute_vertex_channels(channels, channels, matrix)[1:-1])
                     for channels, _ in _stack_shapes(config))
    return Signature(to_output, channels)


class _Costs(NamedTuple):
    """Parameter or FLOP costs: a fixed part, and per data choice of the pruned cell."""

    fixed: int
    projection: np.ndarray  # (n - 1,): input -> vertex t projection, t = 1..n-1
    vertex: np.ndarray  # (n - 2, 3): vertex t's op, columns in VERTEX_OPS order


def _cost_tables(config: Config, sig: Signature) -> tuple[_Costs, _Costs]:
    """Parameter and FLOP tables of a signature, summed over all cells.

    Parameters: conv weights, BatchNorm affine pairs and the classifier's weight and bias
    (the benchmark's ``trainable_parameters``; NASLib's ``params`` = this / 1e6). FLOPs
    for one image, the NAS-Bench-Suite-Zero convention (NASLib's ``flops`` = this / 1e6,
    checked on all 500 of its archs): a conv counts H_out W_out C_out C_in k^2, each
    BatchNorm 2 and each ReLU 1 per output element, a max pool k^2 per output element,
    the classifier in * out; the global average pool and the classifier bias count nothing.
    """
    stem = config.stem_channels
    size = config.image_size
    params = _Costs(27 * stem + 2 * stem, np.zeros(sig.num_vertices - 1, np.int64),
                    np.zeros((sig.num_vertices - 2, 3), np.int64))
    flops = _Costs(size * size * (27 * stem + 3 * stem), np.zeros_like(params.projection),
                   np.zeros_like(params.vertex))
    fixed_params, fixed_flops = params.fixed, flops.fixed
    for stack, cell, c_in, c_out, size in _cells(config):
        if stack and not cell:  # the max pool before the stack
            fixed_flops += size * size * c_in * 4
        area = size * size
        widths = np.asarray(sig.channels[stack] + (c_out,), np.int64)
        params.projection[:] += c_in * widths + 2 * widths
        flops.projection[:] += area * (c_in * widths + 3 * widths)
        inner = widths[:-1]
        for column, op in enumerate(VERTEX_OPS):
            if op in CONV_KERNEL:
                kernel = CONV_KERNEL[op] ** 2
                params.vertex[:, column] += kernel * inner * inner + 2 * inner
                flops.vertex[:, column] += area * (kernel * inner * inner + 3 * inner)
            else:
                flops.vertex[:, column] += area * 9 * inner
    last = stem * 2 ** (config.stacks - 1)
    fixed_params += last * config.num_classes + config.num_classes
    fixed_flops += last * config.num_classes
    return params._replace(fixed=fixed_params), flops._replace(fixed=fixed_flops)


def _total(costs: _Costs, matrix, ops, xp=np):
    """Fixed + chosen projections + chosen vertex ops; NumPy ints or traced."""
    projections = matrix[0, 1:] != 0
    choices = ops[1:-1, None] == xp.asarray(VERTEX_OPS)[None, :]
    if xp is np:
        return int(costs.fixed + costs.projection[projections].sum() + costs.vertex[choices].sum())
    dtype = jnp.int64 if jax.config.jax_enable_x64 else jnp.float32  # FLOPs can pass 2^31
    return (costs.fixed + jnp.sum(jnp.where(projections, costs.projection.astype(dtype), 0))
            + jnp.sum(jnp.where(choices, costs.vertex.astype(dtype), 0))).astype(dtype)


def param_count(arch, config: Config = Config()) -> int:
    """Parameters of the network the benchmark builds for this architecture.

    NASLib's ``params`` (millions) = this / 1e6 with the default config. Accepts an arch
    string, a ``(matrix, ops)`` spec or a genotype.
    """
    genotype = check_arch(arch)
    matrix, ops = _pruned_arrays(genotype)
    return _total(_cost_tables(config, signature(genotype, config))[0], matrix, ops)


def flops(arch, config: Config = Config()) -> int:
    """FLOPs of one image through the network (see :func:`_cost_tables` for the convention).

    NASLib's ``flops`` (millions) = this / 1e6 with the default config.
    """
    genotype = check_arch(arch)
    matrix, ops = _pruned_arrays(genotype)
    return _total(_cost_tables(config, signature(genotype, config))[1], matrix, ops)


# ---------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------
def _conv_bn_relu(conv, bn: nn.BatchNormMode, params, x, eps, padding: int):
    """Conv (+ zero perturbation) - BN - ReLU -> (output, conv output, ReLU input)."""
    out = conv(x, params["kernel"].astype(x.dtype), 1, padding) + eps
    normed = nn.batch_norm(out, params["scale"].astype(x.dtype), params["bias"].astype(x.dtype), bn)
    return jax.nn.relu(normed), out, normed


def _vertex_branches(bn: nn.BatchNormMode, conv=nn.conv2d):
    """The three vertex ops as ``(params, x, eps) -> (y, conv_output, relu_input)``."""

    def pool(params, x, eps):
        zeros = jnp.zeros_like(x)
        return max_pool(x, 3, 1, 1), zeros, zeros

    def conv_op(kernel_size):
        def op(params, x, eps):
            return _conv_bn_relu(conv, bn, params[f"conv{kernel_size}x{kernel_size}"], x, eps,
                                 kernel_size // 2)

        return op

    return (pool, conv_op(1), conv_op(3))


def _projection_branches(bn: nn.BatchNormMode):
    """Skip the projection (zeros) or run it: ``(params, x, eps) -> (y, conv_out, relu_in)``."""

    def skip(params, x, eps):
        zeros = jnp.zeros_like(eps)
        return zeros, zeros, zeros

    def project(params, x, eps):
        return _conv_bn_relu(nn.conv2d, bn, params, x, eps, 0)

    return (skip, project)


# ---------------------------------------------------------------------------
# Flax modules
# ---------------------------------------------------------------------------
def _cell(params, x, matrix, ops, eps, *, widths, to_output, bn, compiled):
    """One cell as a pure function.

    Args:
      params: ``{"input{t}": conv-BN params, "vertex{t}": {"conv1x1": ..., "conv3x3": ...}}``.
      x: the cell input.
      matrix, ops: the pruned cell, (n, n) and (n,): traced ints (compiled: projections,
        edges and ops are data) or NumPy ints (reference: Python control flow).
      eps: ``{"input{t}" / "vertex{t}": zero perturbation of that conv output}``.
      widths: channels of vertices 0..n-1 (static).
      to_output: per interior vertex, whether it feeds the output (static).

    Returns:
      The cell output and ``{name: (conv output, ReLU input, ReLU modules reading it)}``.
    """
    size = len(widths)
    conv = nn.conv2d if compiled else nn.conv2d_reference
    taps, projections = {}, {}
    for t in range(1, size):
        name = f"input{t}"
        if compiled:
            y, out, normed = switched(_projection_branches(bn), matrix[0, t], params[name], x,
                                      eps[name])
        elif matrix[0, t]:
            y, out, normed = _conv_bn_relu(conv, bn, params[name], x, eps[name], 0)
        else:
            y = out = normed = jnp.zeros_like(eps[name])
        taps[name] = (out, normed, jnp.asarray(matrix[0, t] != 0, jnp.int32))
        projections[t] = y

    tensors = [x]
    for t in range(1, size - 1):
        name, width = f"vertex{t}", widths[t]
        total = projections[t]
        for source in range(1, t):
            if widths[source] < width:  # no architecture of this signature has this edge
                continue
            incoming = tensors[source][..., :width]  # the benchmark's truncation
            if compiled:
                total = total + jnp.where(matrix[source, t] != 0, incoming, 0)
            elif matrix[source, t]:
                total = total + incoming
        if compiled:
            y, out, normed = switched(_vertex_branches(bn), ops[t] - MAXPOOL, params[name],
                                      total, eps[name])
        else:
            y, out, normed = _vertex_branches(bn, conv)[int(ops[t]) - MAXPOOL](
                params[name], total, eps[name])
        taps[name] = (out, normed, jnp.asarray(ops[t] != MAXPOOL, jnp.int32))
        tensors.append(y)

    feeding = [tensors[t] for t in range(1, size - 1) if to_output[t - 1]]
    if not feeding:  # only input -> output: the projection alone
        return projections[size - 1], taps
    return jnp.concatenate(feeding, axis=-1) + projections[size - 1], taps


class CellStack(SpaceModule):
    """``cells`` consecutive cells of one shape: ``lax.scan`` (compiled) or a Python loop.

    Scanning keeps one cell body in the compiled program per run of same-shaped cells
    (5 bodies instead of 9 in the benchmark's network); parameters, perturbations and
    sown values are stacked on a leading cell axis. The first cell of a stack changes the
    channel count, so it runs alone in a stack of its own; after the first stack, that
    cell starts with the 2x2 max-pool (``pool``).

    Each cell is a block (AZ-NAS's): its input, the previous block's output (before the
    pool), is perturbable and, when isolating, cut off.
    """

    in_channels: int
    out_channels: int
    channels: tuple[int, ...]  # interior vertices
    to_output: tuple[bool, ...]
    cells: int
    pool: bool = False

    @linen.compact
    def __call__(self, x: Array, matrix, ops) -> Array:
        widths = (self.in_channels,) + tuple(self.channels) + (self.out_channels,)
        size, count = len(widths), self.cells
        if self.pool and count != 1:
            raise ValueError("a pooling CellStack holds one cell (the one that doubles the "
                             f"channels), not {count}")
        input_eps = self.perturb("input", jnp.zeros((count,) + x.shape, x.dtype),
                                 collection=BLOCK_PERTURBATIONS)
        cut = jax.lax.stop_gradient if self.isolate_blocks else (lambda h: h)
        shape = x.shape if not self.pool else (x.shape[0], x.shape[1] // 2, x.shape[2] // 2,
                                               x.shape[3])  # MaxPool2d(2, 2) floors

        def conv_bn(name, c_in, c_out, kernel_size):
            kernel = nn.ConvParams(c_in, c_out, kernel_size, count, name=f"{name}_conv")()
            scale, bias = nn.BatchNormParams(c_out, count, name=f"{name}_bn")()
            return {"kernel": kernel, "scale": scale, "bias": bias}

        params = {f"vertex{t}": {f"conv{k}x{k}": conv_bn(f"vertex{t}_conv{k}x{k}", widths[t],
                                                          widths[t], k) for k in (1, 3)}
                  for t in range(1, size - 1)}
        params.update({f"input{t}": conv_bn(f"input{t}", self.in_channels, widths[t], 1)
                       for t in range(1, size)})
        eps = {name: self.perturb(name, jnp.zeros((count,) + shape[:-1] + (widths[t],),
                                                  x.dtype))
               for t in range(1, size) for name in (f"input{t}", f"vertex{t}") if
               name != f"vertex{size - 1}"}
        cell = functools.partial(_cell, matrix=matrix, ops=ops, widths=widths,
                                 to_output=self.to_output, bn=self.bn, compiled=self.compiled)

        def step(h, per_cell):
            cell_params, cell_eps, cell_input_eps = per_cell
            cell_input = cut(h) + cell_input_eps
            h = max_pool(cell_input, 2, 2, 0) if self.pool else cell_input
            y, cell_taps = cell(cell_params, h, eps=cell_eps)
            return y, (cell_taps, cell_input, y)

        if self.compiled and self.in_channels == self.out_channels:  # a carry keeps its shape
            x, (taps, inputs, outputs) = jax.lax.scan(step, x, (params, eps, input_eps))
        else:
            per_cell = []
            for index in range(count):
                x, sown = step(x, jax.tree.map(lambda a: a[index], (params, eps, input_eps)))
                per_cell.append(sown)
            taps, inputs, outputs = jax.tree.map(lambda *values: jnp.stack(values), *per_cell)
        self.sow(BLOCKS, "input", inputs)
        self.sow(BLOCKS, "output", outputs)
        for name, (out, normed, readers) in taps.items():
            self.sow("intermediates", name, out)
            # NB101's ReLUs are plain nn.ReLU modules (its wrapper class, "ConvBnRelu", does
            # not match the references' 'ReLU'-in-class-name test): no wrapper counts.
            self.sow("relu", name, (normed, readers, jnp.zeros_like(readers)))
        return x


class NB101Network(SpaceModule):
    """The NAS-Bench-101 network of one signature; see the module docstring."""

    config: Config
    sig: Signature

    @linen.compact
    def __call__(self, images: Array, matrix, ops) -> Array:
        stem = self.config.stem_channels
        kernel = nn.ConvParams(images.shape[-1], stem, 3, name="stem_conv")()
        scale, bias = nn.BatchNormParams(stem, name="stem_bn")()
        eps = self.perturb("stem", jnp.zeros(images.shape[:-1] + (stem,), images.dtype))
        x, out, normed = _conv_bn_relu(self.conv, self.bn, {"kernel": kernel, "scale": scale,
                                                       "bias": bias}, images, eps, 1)
        self.sow("intermediates", "stem", out)
        one = jnp.ones((), jnp.int32)
        self.sow("relu", "stem", (normed, one, jnp.zeros_like(one)))
        x = self.block_output(x, "stem_output")
        for stack, first, cells, c_in, c_out in _runs(self.config):
            x = CellStack(c_in, c_out, self.sig.channels[stack], self.sig.to_output, cells,
                          pool=bool(stack and not first), bn=self.bn, compiled=self.compiled,
                          isolate_blocks=self.isolate_blocks,
                          name=f"cells_{stack}_{first}")(x, ops=ops, matrix=matrix)
        self.sow("features", "pre_gap", x)
        logits = nn.Dense(self.config.num_classes, name="classifier")(nn.global_avg_pool(x))
        logits = self.perturb("logits", logits)
        self.sow("intermediates", "logits", logits)
        return logits


def _blocks(config: Config) -> tuple[Block, ...]:
    """The stem, then every cell (:class:`CellStack`'s), the pools inside the cells after
    them: AZ-NAS's feature maps."""
    blocks = [Block("stem", ("stem_output",))]
    for stack, first, cells, _, _ in _runs(config):
        name = f"cells_{stack}_{first}"
        blocks += [Block(f"{name}/{cell}", (name, "output"), (cell,), (name, "input"), (cell,))
                   for cell in range(cells)]
    return tuple(blocks)


def _runs(config: Config):
    """Runs of same-shaped cells: (stack, first cell, cells, input channels, channels)."""
    previous = config.stem_channels
    for stack, (channels, _) in enumerate(_stack_shapes(config)):
        if previous == channels:
            yield stack, 0, config.cells_per_stack, channels, channels
        else:
            yield stack, 0, 1, previous, channels
            if config.cells_per_stack > 1:
                yield stack, 1, config.cells_per_stack - 1, channels, channels
        previous = channels


# ---------------------------------------------------------------------------
# The layer table and the Network seam
# ---------------------------------------------------------------------------
def _layer_table(config: Config, sig: Signature):
    """Conv/Linear layers, with per layer the data choice that activates it.

    Returns the layers, and per layer a ``(kind, vertex)`` selector: ``("always", 0)``,
    ``("input", t)`` (the projection into vertex t) or ``(op code, t)``.
    """
    size = sig.num_vertices
    layers, selectors = [], []

    def add(name, shape, param_path, output_path, selector, index=(), kind="conv"):
        layers.append(Layer(name, kind, tuple(shape), tuple(param_path), tuple(output_path),
                            param_index=index, output_index=index,
                            batch_norm=kind == "conv"))
        selectors.append(selector)

    stem = config.stem_channels
    add("stem/conv", (3, 3, 3, stem), ("stem_conv", "kernel"), ("stem",), ("always", 0))
    for stack, first, cells, c_in, c_out in _runs(config):
        module = f"cells_{stack}_{first}"
        widths = (c_in,) + sig.channels[stack] + (c_out,)
        for index in range(cells):
            prefix = f"stack{stack}/cell{first + index}"
            for t in range(1, size - 1):
                for op, k in ((CONV3X3, 3), (CONV1X1, 1)):
                    add(f"{prefix}/vertex{t}/conv{k}x{k}", (k, k, widths[t], widths[t]),
                        (module, f"vertex{t}_conv{k}x{k}_conv", "kernel"), (module, f"vertex{t}"),
                        (op, t), (index,))
            for t in range(1, size):
                target = "output" if t == size - 1 else f"vertex{t}"
                add(f"{prefix}/input_to_{target}/conv", (1, 1, c_in, widths[t]),
                    (module, f"input{t}_conv", "kernel"), (module, f"input{t}"), ("input", t),
                    (index,))
    last = stem * 2 ** (config.stacks - 1)
    add("classifier", (last, config.num_classes), ("classifier", "kernel"), ("logits",),
        ("always", 0), kind="linear")
    return tuple(layers), tuple(selectors)


def network(config: Config = Config(), signature: Signature | None = None) -> Network:
    """The compiled network of one signature (one program for all its architectures).

    Args:
      config: the network shape.
      signature: :func:`signature` of the architectures to run (required: NB101's shapes
        depend on the architecture).

    Its ``apply(variables, genotype, images, ...)`` takes the full (unpruned) genotype as
    data and prunes it inside the program; a concrete genotype of another signature is
    rejected.
    """
    if signature is None:
        raise ValueError("NB101 networks differ in shape between architectures: pass "
                         "signature=nb101.signature(arch, config)")
    return _network(config, _as_signature(signature), True)


def reference_network(config: Config = Config(), signature: Signature | None = None) -> Network:
    """The per-architecture reference: the same parameters, plain Python control flow.

    Its ``apply`` needs a concrete genotype, so jit it with the genotype static.
    """
    if signature is None:
        raise ValueError("pass signature=nb101.signature(arch, config)")
    return _network(config, _as_signature(signature), False)


def _as_signature(value) -> Signature:
    to_output, channels = value
    return Signature(tuple(bool(v) for v in to_output),
                     tuple(tuple(int(c) for c in stack) for stack in channels))


@functools.lru_cache(maxsize=None)
def _network(config: Config, sig: Signature, compiled: bool) -> Network:
    layers, selectors = _layer_table(config, sig)
    param_costs, flop_costs = _cost_tables(config, sig)
    size = sig.num_vertices

    def check(genotype):
        """Concrete genotype -> pruned NumPy arrays, after checking its signature."""
        genotype = validate_genotype(genotype)
        if signature(genotype, config) != sig:
            raise ValueError(f"NB101 genotype {decode(genotype)} has signature "
                             f"{signature(genotype, config)}, not this network's {sig}")
        return _pruned_arrays(genotype)

    def pruned(genotype):
        """Traced genotype -> traced pruned arrays; concrete -> checked NumPy arrays."""
        if isinstance(genotype, jax.core.Tracer):
            return _pruned_traced(jnp.asarray(genotype, jnp.int32), size)
        return check(genotype)

    def init(key, images=None, *, init_draw=initialisation.DEFAULT_INIT_DRAW):
        if images is None:
            images = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)
        module = NB101Network(config, sig, compiled=True)
        zeros = jnp.zeros((size, size), jnp.int32), jnp.zeros(size, jnp.int32)
        return {"params": initialisation.init_variables(
            lambda k: module.init(k, images, *zeros)["params"], key, init_draw)}

    def apply(variables, genotype, images, *, bn="batch", reduction_bn=None, capture=False,
              isolate_blocks=False):
        del reduction_bn  # NB101 has no residual reduction blocks
        module = NB101Network(config, sig, bn=bn, compiled=compiled,
                              isolate_blocks=isolate_blocks)
        matrix, ops = pruned(genotype)
        if compiled:
            matrix, ops = jnp.asarray(matrix, jnp.int32), jnp.asarray(ops, jnp.int32)
        return apply_module(module, variables, images, matrix, ops, capture=capture)

    def active(genotype):
        matrix, ops = pruned(genotype)
        xp = np if isinstance(matrix, np.ndarray) else jnp
        flags = []
        for kind, vertex in selectors:
            if kind == "always":
                flags.append(True)
            elif kind == "input":
                flags.append(matrix[0, vertex] != 0)
            else:
                flags.append(ops[vertex] == kind)
        return xp.stack([xp.asarray(flag) for flag in flags])

    def counts(costs, genotype):
        matrix, ops = pruned(genotype)
        xp = np if isinstance(matrix, np.ndarray) else jnp
        return _total(costs, matrix, ops, xp)

    return Network(
        space="nb101",
        layers=layers,
        init=init,
        apply=apply,
        active=active,
        param_count=functools.partial(counts, param_costs),
        flops=functools.partial(counts, flop_costs),
        num_classes=config.num_classes,
        image_size=config.image_size,
        blocks=_blocks(config),
    )


SPACE = SearchSpace(
    name="nb101", Config=Config, num_archs=NUM_ARCHS,
    encode=encode, decode=decode, check_arch=check_arch, arch_strings=arch_strings,
    sample=sample, network=network, reference_network=reference_network,
    param_count=param_count, flops=flops, signature=signature, mutate=mutate,
    # NASLib's NB101 key is the canonical string itself.
    from_naslib=encode, to_naslib=decode, naslib_name="nasbench101",
)
