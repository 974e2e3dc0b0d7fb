"""DARTS cell search space, in NAS-Bench-301's network.

A cell has two inputs (the outputs of the two previous cells, c_{k-2} and c_{k-1}) and
four intermediate nodes; node ``j`` sums two ops, each applied to one of the states
before it (the two inputs and nodes ``0..j-1``), and the cell's output is the channel
concatenation of the four nodes. There are two cell types, normal and reduce; in a reduce
cell, ops reading a cell input have stride 2 (``skip_connect`` becomes a FactorizedReduce)
while ops reading a node have stride 1. Candidate ops, :data:`OPS`: ``max_pool_3x3``,
``avg_pool_3x3``, ``skip_connect``, ``sep_conv_3x3``, ``sep_conv_5x5``, ``dil_conv_3x3``,
``dil_conv_5x5`` (DARTS' definitions: pools with padding 1, ``count_include_pad=False``;
``sep_conv`` = twice ReLU - depthwise kxk - pointwise 1x1 - BN, the first with the
stride; ``dil_conv`` = ReLU - depthwise kxk dilation 2 - pointwise - BN).

The network is DARTS' ``NetworkCIFAR`` (the evaluation network NAS-Bench-301 trained),
without auxiliary head or drop path, in the configuration NASLib scores NAS-Bench-301
with: C = 32 initial channels, 8 cells (reduce cells at 8//3 = 2 and 2*8//3 = 5), a stem
Conv3x3(3 -> 3C) + BN; each cell preprocesses its inputs to C channels with ReLU -
Conv1x1 - BN (c_{k-2} with a FactorizedReduce after a reduce cell); the head is global
average pooling - Linear(4C_last -> num_classes). Reduce cells double C.

``Config.affine`` / ``Config.pool_bn`` choose between DARTS' evaluation ops (affine
BatchNorms in the cell ops, pools without BatchNorm: the default) and the graph NASLib
computed NAS-Bench-Suite-Zero's NB301 scores on (:data:`NASLIB_ZERO_COST`: no affine
parameters in the cell ops' BatchNorms, and a non-affine BatchNorm after every pool); the
``params`` field of NASLib's NB301 zero-cost data matches the latter for all 725 archs.

Genotype (the canonical int form): int32 (2, 8, 2): cell type (normal, reduce), slot
(node ``slot // 2``), (input, op); input 0/1 are c_{k-2}/c_{k-1}, 2 + i is node i. Its
string (:func:`decode`) is NASLib's "compact" representation, the keys of its NB301
zero-cost JSON: ``"[[(0, 0), (1, 5), ...8 pairs], [...8 pairs]]"``. :func:`to_darts` /
:func:`from_darts` convert to and from the DARTS paper's ``Genotype(normal=[(op, input),
...], normal_concat=[2, 3, 4, 5], reduce=..., reduce_concat=...)``.

The genotype is DATA: one compilation serves every architecture (:func:`network`).
Every (cell, slot) holds the parameters of every candidate op; its input is picked by a
dynamic index into the stacked candidate states, its op by ``lax.switch`` under custom
VJPs (:mod:`zcjax.spaces.switch`), and a cell's 8 slots are one ``lax.scan``. In a reduce
cell the switch has 14 branches: the 7 stride-2 ops on the selected cell input and the 7
stride-1 ops on the selected node, picked by ``op + 7 * (input >= 2)``. Depthwise
convolutions are sums of shifted slices (:func:`zcjax.spaces.ops.depthwise_conv2d`: XLA's
grouped convolution has a slow autodiff backward inside ``lax.switch`` on CPU, minutes
per architecture); :func:`reference_network` is the per-architecture form with XLA's
grouped convolutions and Python control flow.

Differences from the PyTorch networks: PyTorch-default init (every space here), stateless
BatchNorm, FactorizedReduce pads its shifted path (identical for even sizes), and zen
leaves out the BatchNorms whose input is not one layer's output and whose use depends on
the genotype (a reduce cell's FactorizedReduce, ``pool_bn``'s BatchNorms).

References:
  Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019.
  Siems et al., "NAS-Bench-301 and the Case for Surrogate Benchmarks for Neural
  Architecture Search", 2020. Krishnakumar et al., "NAS-Bench-Suite-Zero", NeurIPS 2022.
"""

from __future__ import annotations

import ast
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
from zcjax.spaces import ops
from zcjax.spaces._network import ConvBN, SpaceModule, make_network
from zcjax.spaces.switch import switched

Array = jax.Array

OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
       "dil_conv_3x3", "dil_conv_5x5")
OP_INDEX = {name: index for index, name in enumerate(OPS)}
MAX_POOL, AVG_POOL, SKIP = 0, 1, 2
SEP_CONVS = {3: 3, 4: 5}  # op -> kernel size
DIL_CONVS = {5: 3, 6: 5}
CELL_TYPES = ("normal", "reduce")
NUM_NODES = 4  # intermediate nodes per cell
NUM_SLOTS = 2 * NUM_NODES
SLOT_NODE = tuple(slot // 2 for slot in range(NUM_SLOTS))
GENOTYPE_SHAPE = (len(CELL_TYPES), NUM_SLOTS, 2)
# Distinct cells up to the order of a node's two (distinct) inputs: prod_j C(j+2, 2) * 7^2.
NUM_ARCHS = (1 * 3 * 6 * 10 * len(OPS) ** NUM_SLOTS) ** 2  # ~1.1e18: no all_genotypes()
TAPS = 4  # conv outputs per slot: sep_conv's dw1, pw1, dw2, pw2 (dil_conv: dw, pw)
_SPACE = "DARTS"


@dataclasses.dataclass(frozen=True)
class Config:
    """Network shape. NAS-Bench-301's (as NASLib scores it) is the default.

    Attributes:
      channels: C, the first cells' channels (even: FactorizedReduce halves it).
      layers: number of cells; reduce cells at ``layers // 3`` and ``2 * layers // 3``.
      stem_multiplier: the stem outputs ``stem_multiplier * C`` channels.
      num_classes: classifier width.
      image_size: input height and width.
      affine: the cell ops' BatchNorms have affine parameters (DARTS' evaluation network).
      pool_bn: a non-affine BatchNorm follows each pool (NASLib's graph).
    """

    channels: int = 32
    layers: int = 8
    stem_multiplier: int = 3
    num_classes: int = 10
    image_size: int = 32
    affine: bool = True
    pool_bn: bool = False

    def __post_init__(self):
        if self.channels < 2 or self.channels % 2:
            raise ValueError(f"DARTS channels must be even and >= 2, got {self.channels}")
        if self.layers < 1:
            raise ValueError(f"DARTS layers must be >= 1, got {self.layers}")


# The graph NASLib computed NAS-Bench-Suite-Zero's NB301 proxies on.
NASLIB_ZERO_COST = Config(affine=False, pool_bn=True)


# ---------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------
def validate_genotype(genotype) -> np.ndarray:
    """Check a concrete int genotype; return it as int32 (2, 8, 2).

    Raises:
      ValueError: naming the shape, dtype, or the first cell/node/slot whose input or op
        is out of range (slot ``s`` belongs to node ``s // 2``, whose inputs are
        ``0..s // 2 + 1``).
    """
    try:
        array = np.asarray(genotype)
    except ValueError as error:  # ragged nesting
        raise ValueError(f"a {_SPACE} genotype has shape {GENOTYPE_SHAPE}: {error}") from None
    if array.shape != GENOTYPE_SHAPE:
        raise ValueError(f"a {_SPACE} genotype has shape {GENOTYPE_SHAPE} (cell type, slot, "
                         f"(input, op)), got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"a {_SPACE} genotype must be integers, got dtype {array.dtype}")
    for cell, name in enumerate(CELL_TYPES):
        for slot, (source, op) in enumerate(array[cell].tolist()):
            node = SLOT_NODE[slot]
            if not 0 <= op < len(OPS):
                raise ValueError(f"{_SPACE} {name} cell, node {node} (slot {slot}): op {op} "
                                 f"is out of range 0..{len(OPS) - 1}")
            if not 0 <= source <= node + 1:
                raise ValueError(f"{_SPACE} {name} cell, node {node} (slot {slot}): input "
                                 f"{source} is out of range 0..{node + 1}")
    return array.astype(np.int32)


def _parse_pairs(text: str, what: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"malformed {_SPACE} {what} {text!r}: not a Python literal") from None


def encode(arch: str) -> np.ndarray:
    """NASLib's compact string ``"[[(input, op) x 8], [(input, op) x 8]]"`` -> genotype.

    Raises:
      ValueError: naming the malformed part.
    """
    if not isinstance(arch, str):
        raise ValueError(f"a {_SPACE} arch must be a string, got {type(arch).__name__}")
    cells = _parse_pairs(arch, "arch")
    if not isinstance(cells, (list, tuple)) or len(cells) != len(CELL_TYPES):
        raise ValueError(f"malformed {_SPACE} arch {arch!r}: expected [normal cell, reduce "
                         "cell], each a list of 8 (input, op) pairs")
    for name, cell in zip(CELL_TYPES, cells):
        if not isinstance(cell, (list, tuple)) or len(cell) != NUM_SLOTS:
            raise ValueError(f"malformed {_SPACE} arch {arch!r}: the {name} cell must be a "
                             f"list of {NUM_SLOTS} (input, op) pairs")
        for slot, pair in enumerate(cell):
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
                raise ValueError(f"malformed {_SPACE} arch {arch!r}: {name} cell entry {slot} "
                                 f"is {pair!r}, not an (input, op) pair of ints")
    return validate_genotype(cells)


def decode(genotype) -> str:
    """Genotype -> canonical compact string (NASLib's NB301 JSON key format)."""
    array = validate_genotype(genotype)
    return str([[tuple(pair) for pair in cell.tolist()] for cell in array])


_DARTS_GENOTYPE = re.compile(
    r"\s*Genotype\(\s*normal\s*=\s*(\[.*?\])\s*,\s*normal_concat\s*=\s*(.*?)\s*,"
    r"\s*reduce\s*=\s*(\[.*?\])\s*,\s*reduce_concat\s*=\s*(.*?)\s*\)\s*", re.DOTALL)


def _concat_nodes(value) -> list[int]:
    if isinstance(value, str):
        match = re.fullmatch(r"range\(\s*(\d+)\s*,\s*(\d+)\s*\)", value.strip())
        value = range(int(match[1]), int(match[2])) if match else _parse_pairs(value, "concat")
    return list(value)


def from_darts(genotype) -> np.ndarray:
    """DARTS' ``Genotype(normal=[(op_name, input), ...], normal_concat, reduce, ...)``
    (the namedtuple or its repr) -> genotype.

    Raises:
      ValueError: if malformed, or if a concat is not all four intermediate nodes.
    """
    if isinstance(genotype, str):
        match = _DARTS_GENOTYPE.fullmatch(genotype)
        if match is None:
            raise ValueError(f"malformed DARTS Genotype {genotype!r}: expected 'Genotype("
                             "normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)'")
        cells = [_parse_pairs(match[1], "normal cell"), _parse_pairs(match[3], "reduce cell")]
        concats = [match[2], match[4]]
    else:
        cells = [genotype.normal, genotype.reduce]
        concats = [genotype.normal_concat, genotype.reduce_concat]
    pairs = []
    for name, cell, concat in zip(CELL_TYPES, cells, concats):
        if _concat_nodes(concat) != list(range(2, 2 + NUM_NODES)):
            raise ValueError(f"DARTS Genotype {name}_concat {concat!r}: only the concatenation "
                             "of all four intermediate nodes [2, 3, 4, 5] is supported")
        if not isinstance(cell, (list, tuple)) or len(cell) != NUM_SLOTS:
            raise ValueError(f"malformed DARTS Genotype: the {name} cell must list "
                             f"{NUM_SLOTS} (op, input) pairs, got {cell!r}")
        row = []
        for slot, entry in enumerate(cell):
            if (not isinstance(entry, (list, tuple)) or len(entry) != 2
                    or entry[0] not in OP_INDEX or not isinstance(entry[1], int)):
                raise ValueError(f"malformed DARTS Genotype: {name} entry {slot} is {entry!r}, "
                                 f"not an (op, input) pair with op one of {', '.join(OPS)}")
            row.append((entry[1], OP_INDEX[entry[0]]))
        pairs.append(row)
    return validate_genotype(pairs)


def to_darts(genotype) -> str:
    """Genotype -> the DARTS ``Genotype(...)`` repr (NASLib's ``convert_compact_to_genotype``)."""
    array = validate_genotype(genotype)
    normal, reduce = ([(OPS[op], source) for source, op in cell.tolist()] for cell in array)
    return (f"Genotype(normal={normal}, normal_concat=[2, 3, 4, 5], reduce={reduce}, "
            "reduce_concat=[2, 3, 4, 5])")


def check_arch(arch_or_genotype) -> np.ndarray:
    """Compact string, DARTS Genotype (object or repr) or int genotype -> int32 genotype."""
    if isinstance(arch_or_genotype, str):
        if arch_or_genotype.lstrip().startswith("Genotype"):
            return from_darts(arch_or_genotype)
        return encode(arch_or_genotype)
    if hasattr(arch_or_genotype, "normal") and hasattr(arch_or_genotype, "reduce"):
        return from_darts(arch_or_genotype)
    return validate_genotype(arch_or_genotype)


def sample(key: Array, num: int, *, replace: bool = False) -> np.ndarray:
    """``num`` genotypes as NASLib samples them: per node two distinct inputs, ops uniform.

    (num, 2, 8, 2) int32. Without ``replace``, duplicates (probability ~num^2 / 1e18) are
    redrawn.
    """
    def one(key):
        input_key, op_key = jax.random.split(key)
        input_keys = jax.random.split(input_key, (len(CELL_TYPES), NUM_NODES))
        inputs = jnp.stack([
            jax.vmap(lambda k, n=node: jax.random.choice(k, n + 2, (2,), replace=False))(
                input_keys[:, node])
            for node in range(NUM_NODES)], axis=1).reshape(len(CELL_TYPES), NUM_SLOTS)
        op_ids = jax.random.randint(op_key, (len(CELL_TYPES), NUM_SLOTS), 0, len(OPS))
        return jnp.stack([inputs, op_ids], axis=-1)

    genotypes = np.asarray(jax.vmap(one)(jax.random.split(key, num)), np.int32)
    while not replace and len({g.tobytes() for g in genotypes}) < num:
        key = jax.random.fold_in(key, 1)
        _, first = np.unique(genotypes.reshape(num, -1), axis=0, return_index=True)
        repeated = np.setdiff1d(np.arange(num), first)
        genotypes[repeated] = sample(key, len(repeated), replace=True)
    return genotypes


def mutate(genotype, rng: np.random.Generator) -> np.ndarray:
    """One slot of one cell changes, as NASLib mutates NB301 genotypes.

    A cell type and a slot are drawn uniformly; half the time the slot takes another op,
    otherwise another input, one that neither it nor its node's other slot uses (node 0
    has no such input, so its slots always change op). The child is valid and differs
    from the parent in exactly one entry.
    """
    child = validate_genotype(genotype).copy()
    cell, slot = int(rng.integers(len(CELL_TYPES))), int(rng.integers(NUM_SLOTS))
    node, partner = SLOT_NODE[slot], slot ^ 1
    free_inputs = [source for source in range(node + 2)
                   if source not in (child[cell, slot, 0], child[cell, partner, 0])]
    if free_inputs and rng.random() < 0.5:
        child[cell, slot, 0] = free_inputs[int(rng.integers(len(free_inputs)))]
    else:
        child[cell, slot, 1] = (child[cell, slot, 1] + int(rng.integers(1, len(OPS)))) % len(OPS)
    return child


def arch_strings(genotypes: Sequence) -> list[str]:
    """Decode many genotypes."""
    return [decode(g) for g in np.asarray(genotypes)]


# ---------------------------------------------------------------------------
# Macro structure
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Cell:
    index: int
    reduction: bool
    reduction_prev: bool
    c_pp: int  # channels of c_{k-2}
    c_p: int  # channels of c_{k-1}
    channels: int  # C of this cell (its output has 4C)
    size: int  # spatial size of c_{k-1} (and of c_{k-2} after preprocessing)
    out_size: int

    @property
    def name(self) -> str:
        return f"cell{self.index}"


def _halved(size: int) -> int:
    return (size - 1) // 2 + 1


def _cells(config: Config) -> list[_Cell]:
    cells, c_pp = [], config.stem_multiplier * config.channels
    c_p, channels, size, reduction_prev = c_pp, config.channels, config.image_size, False
    for index in range(config.layers):
        reduction = index in (config.layers // 3, 2 * config.layers // 3)
        channels = 2 * channels if reduction else channels
        out_size = _halved(size) if reduction else size
        cells.append(_Cell(index, reduction, reduction_prev, c_pp, c_p, channels, size, out_size))
        c_pp, c_p, size, reduction_prev = c_p, 4 * channels, out_size, reduction
    return cells


# ---------------------------------------------------------------------------
# Active network: parameter count and FLOPs (static, from the genotype)
# ---------------------------------------------------------------------------
def _cost_tables(config: Config) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Fixed parts and per-(cell, slot, input kind, op) params and FLOPs.

    Input kind 0: the slot reads a cell input, 1: a node (only a reduce cell's
    ``skip_connect`` cares). Conventions as :func:`zcjax.spaces.nb201.param_count`: a conv
    counts ``H_out W_out C_out C_in k^2 / groups`` FLOPs, a pool ``C H_out W_out k^2``, the
    classifier ``in * out + out``; affine BatchNorm parameters count, BatchNorm and ReLU
    FLOPs do not.
    """
    stem = config.stem_multiplier * config.channels
    fixed_params = 27 * stem + 2 * stem
    fixed_flops = config.image_size ** 2 * stem * 27
    cells = _cells(config)
    params = np.zeros((len(cells), NUM_SLOTS, 2, len(OPS)), np.int64)
    flops_ = np.zeros_like(params)
    bn = 2 if config.affine else 0
    for cell in cells:
        c, area = cell.channels, cell.size ** 2
        # Preprocessing: ReLUConvBN 1x1, or FactorizedReduce (two halves, stride 2); affine.
        fixed_params += cell.c_pp * c + 2 * c + cell.c_p * c + 2 * c
        fixed_flops += area * c * cell.c_pp + area * c * cell.c_p
        out = cell.out_size ** 2
        for kind in (0, 1):
            stride2 = cell.reduction and kind == 0
            table_p, table_f = params[cell.index, :, kind], flops_[cell.index, :, kind]
            table_f[:, MAX_POOL] = table_f[:, AVG_POOL] = out * c * 9
            if stride2:
                table_p[:, SKIP], table_f[:, SKIP] = c * c + bn * c, out * c * c
            for op, size in SEP_CONVS.items():
                table_p[:, op] = 2 * (size * size * c + c * c) + 2 * bn * c
                table_f[:, op] = 2 * out * (size * size * c + c * c)
            for op, size in DIL_CONVS.items():
                table_p[:, op] = size * size * c + c * c + bn * c
                table_f[:, op] = out * (size * size * c + c * c)
    last = 4 * cells[-1].channels
    fixed_params += last * config.num_classes + config.num_classes
    fixed_flops += last * config.num_classes + config.num_classes
    return fixed_params, fixed_flops, params, flops_


def _slot_total(table: np.ndarray, genotype, config: Config):
    """Sum over cells and slots of ``table[cell, slot, input >= 2, op]``."""
    cell_types = np.asarray([int(cell.reduction) for cell in _cells(config)])
    cells, slots = np.arange(len(cell_types))[:, None], np.arange(NUM_SLOTS)[None, :]
    if isinstance(genotype, np.ndarray):
        chosen = genotype[cell_types]  # (cells, 8, 2)
        return int(table[cells, slots, (chosen[..., 0] >= 2).astype(int), chosen[..., 1]].sum())
    chosen = genotype[cell_types]
    # Traced: int64 under x64, else float32 (large configs pass int32).
    dtype = jnp.int64 if jax.config.jax_enable_x64 else jnp.float32
    kinds = (chosen[..., 0] >= 2).astype(jnp.int32)
    return jnp.asarray(table, dtype)[cells, slots, kinds, chosen[..., 1]].sum()


def param_count(arch, config: Config = Config()) -> int:
    """Parameters of the active network (conv, affine BN, linear); unused ops never count.

    With :data:`NASLIB_ZERO_COST` this is NASLib's NB301 ``params`` field. Accepts any
    arch form or a genotype; a traced genotype gives a traced count.
    """
    genotype = arch if isinstance(arch, jax.core.Tracer) else check_arch(arch)
    fixed, _, per_slot, _ = _cost_tables(config)
    return fixed + _slot_total(per_slot, genotype, config)


def flops(arch, config: Config = Config()) -> int:
    """FLOPs (multiply-accumulates of convs, pools and the classifier) of one image."""
    genotype = arch if isinstance(arch, jax.core.Tracer) else check_arch(arch)
    _, fixed, _, per_slot = _cost_tables(config)
    return fixed + _slot_total(per_slot, genotype, config)


# ---------------------------------------------------------------------------
# Candidate ops of one slot
# ---------------------------------------------------------------------------
def slot_op_functions(bn: nn.BatchNormMode, conv, depthwise, *, stride: int, config: Config,
                      tap_shape, factorized: bool):
    """The 7 candidate ops of a slot as ``(params, x, eps) -> (y, taps)``.

    ``taps``: ``{"conv": (4, *tap_shape)`` the conv outputs (sep_conv: dw1, pw1, dw2, pw2;
    dil_conv: dw, pw, 0, 0), ``"relu_mid"``: sep_conv's second ReLU input,
    ``"factorized"`` (only with ``factorized``): a stride-2 skip's two FactorizedReduce
    halves ``(2, N, H', W', C/2)}``; zeros where the op has none. ``eps`` holds zero
    perturbations of ``conv`` and ``factorized``.
    """
    channels = tap_shape[-1]
    half_shape = (2,) + tap_shape[:-1] + (channels // 2,)

    def norm(params, name, x, affine=config.affine):
        if affine:
            scale, bias = params[name]["scale"], params[name]["bias"]
        else:
            scale, bias = jnp.ones(channels, x.dtype), jnp.zeros(channels, x.dtype)
        return nn.batch_norm(x, scale.astype(x.dtype), bias.astype(x.dtype), bn)

    def taps(x, conv_taps=None, relu_mid=None, halves=None):
        zeros = jnp.zeros(tap_shape, x.dtype)
        out = {"conv": jnp.stack(conv_taps + [zeros] * (TAPS - len(conv_taps)))
               if conv_taps else jnp.zeros((TAPS,) + tap_shape, x.dtype),
               "relu_mid": zeros if relu_mid is None else relu_mid}
        if factorized:
            out["factorized"] = jnp.zeros(half_shape, x.dtype) if halves is None else halves
        return out

    def pool(function):
        def op(params, x, eps):
            y = function(x)
            return (norm(params, None, y, affine=False) if config.pool_bn else y), taps(x)

        return op

    def skip(params, x, eps):
        if stride == 1:
            return x, taps(x)
        halves = ops.factorized_reduce_halves(conv, jax.nn.relu(x), params["factorized_a"][
            "kernel"], params["factorized_b"]["kernel"], stride) + eps["factorized"]
        y = norm(params, "bn_factorized", jnp.concatenate([halves[0], halves[1]], axis=-1))
        return y, taps(x, halves=halves)

    def sep_conv(size):
        def op(params, x, eps):
            name = f"sep{size}"
            dw1 = depthwise(jax.nn.relu(x), params[f"{name}_dw1"]["kernel"], stride,
                            size // 2) + eps["conv"][0]
            pw1 = conv(dw1, params[f"{name}_pw1"]["kernel"], 1, 0) + eps["conv"][1]
            mid = norm(params, f"{name}_bn1", pw1)
            dw2 = depthwise(jax.nn.relu(mid), params[f"{name}_dw2"]["kernel"], 1,
                            size // 2) + eps["conv"][2]
            pw2 = conv(dw2, params[f"{name}_pw2"]["kernel"], 1, 0) + eps["conv"][3]
            return norm(params, f"{name}_bn2", pw2), taps(x, [dw1, pw1, dw2, pw2], mid)

        return op

    def dil_conv(size):
        def op(params, x, eps):
            name = f"dil{size}"
            dw = depthwise(jax.nn.relu(x), params[f"{name}_dw"]["kernel"], stride, size - 1,
                           2) + eps["conv"][0]
            pw = conv(dw, params[f"{name}_pw"]["kernel"], 1, 0) + eps["conv"][1]
            return norm(params, f"{name}_bn", pw), taps(x, [dw, pw])

        return op

    return (pool(lambda x: ops.max_pool(x, 3, stride, 1)),
            pool(lambda x: nn.avg_pool(x, 3, stride, 1)), skip,
            sep_conv(3), sep_conv(5), dil_conv(3), dil_conv(5))


def _slot_layers(factorized: bool) -> list[tuple[str, int, tuple, str, int, bool]]:
    """Per conv of a slot's candidates: (param name, op, shape code, tap, tap index, BN after).

    Shape codes: "dw{k}" (k, k, 1, C), "pw" (1, 1, C, C), "half" (1, 1, C, C/2).
    """
    layers = []
    if factorized:
        layers += [("factorized_a", SKIP, "half", "factorized", 0, False),
                   ("factorized_b", SKIP, "half", "factorized", 1, False)]
    for op, size in SEP_CONVS.items():
        for index, (part, code) in enumerate([("dw1", f"dw{size}"), ("pw1", "pw"),
                                              ("dw2", f"dw{size}"), ("pw2", "pw")]):
            layers.append((f"sep{size}_{part}", op, code, "conv", index, part.startswith("pw")))
    for op, size in DIL_CONVS.items():
        for index, (part, code) in enumerate([("dw", f"dw{size}"), ("pw", "pw")]):
            layers.append((f"dil{size}_{part}", op, code, "conv", index, part == "pw"))
    return layers


def _shape(code: str, channels: int) -> tuple[int, ...]:
    if code == "pw":
        return (1, 1, channels, channels)
    if code == "half":
        return (1, 1, channels, channels // 2)
    size = int(code[2:])
    return (size, size, 1, channels)


class SlotParams(linen.Module):
    """Every candidate op's parameters in the 8 slots of a cell, stacked (slot axis 0)."""

    channels: int
    affine: bool
    factorized: bool

    @linen.compact
    def __call__(self):
        params = {}
        for name, _, code, _, _, _ in _slot_layers(self.factorized):
            shape = _shape(code, self.channels)
            params[name] = {"kernel": nn.ConvParams(shape[2], shape[3], shape[0], NUM_SLOTS,
                                                    name=name)()}
        if self.affine:
            names = [f"sep{k}_bn{i}" for k in SEP_CONVS.values() for i in (1, 2)]
            names += [f"dil{k}_bn" for k in DIL_CONVS.values()]
            names += ["bn_factorized"] if self.factorized else []
            for name in names:
                scale, bias = nn.BatchNormParams(self.channels, NUM_SLOTS, name=name)()
                params[name] = {"scale": scale, "bias": bias}
        return params


# ---------------------------------------------------------------------------
# Flax modules
# ---------------------------------------------------------------------------
class FactorizedReducePreprocess(SpaceModule):
    """c_{k-2} after a reduce cell: ReLU, two stride-2 1x1 convs to C/2, concat, BN."""

    in_channels: int
    out_channels: int

    @linen.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        # A ReLU module, not inside a "ReLU"-named wrapper.
        self.sow("relu", "input", (x, jnp.ones((), jnp.int32), jnp.zeros((), jnp.int32)))
        kernels = [nn.ConvParams(self.in_channels, self.out_channels // 2, 1,
                                 name=f"factorized_{path}")().astype(x.dtype) for path in "ab"]
        halves = ops.factorized_reduce_halves(self.conv, jax.nn.relu(x), *kernels, 2)
        halves = self.perturb("factorized_out", halves)
        self.sow("intermediates", "factorized_out", halves)
        out = jnp.concatenate([halves[0], halves[1]], axis=-1)
        scale, bias = nn.BatchNormParams(self.out_channels, name="bn")()
        return nn.batch_norm(out, scale.astype(x.dtype), bias.astype(x.dtype), self.bn), out


class Cell(SpaceModule):
    """One DARTS cell; ``genotype`` is the whole (2, 8, 2) genotype.

    Compiled, the 8 slots are a ``lax.scan`` (one slot body in the program instead of 8:
    the compile time drops about eightfold) whose carry holds the four nodes.
    """

    cell: _Cell
    config: Config

    @linen.compact
    def __call__(self, s0: Array | None, s1: Array, genotype) -> tuple[Array, list[Array]]:
        """``s0`` is None in the first cell, whose two inputs are both the stem's output.

        As a block (AZ-NAS's), the cell's input is ``s1``, the previous block's output:
        the first cell's one input is perturbed once and read twice, so its gradient is
        the whole cell's; a later cell's ``s0`` (two blocks back) is cut when isolating,
        so the gradient at ``s1`` is this cell's alone.
        """
        cell, config, c = self.cell, self.config, self.cell.channels
        s1 = self.block_input(s1)
        if s0 is None:
            s0 = s1
        elif self.isolate_blocks:
            s0 = jax.lax.stop_gradient(s0)
        bn_inputs = []
        if cell.reduction_prev:
            s0, bn_input = FactorizedReducePreprocess(cell.c_pp, c, bn=self.bn,
                                                      compiled=self.compiled,
                                                      name="preprocess0")(s0)
            bn_inputs.append(bn_input)
        else:
            s0 = ConvBN(cell.c_pp, c, 1, bn=self.bn, compiled=self.compiled,
                        name="preprocess0")(s0)
        s1 = ConvBN(cell.c_p, c, 1, bn=self.bn, compiled=self.compiled, name="preprocess1")(s1)
        slots = genotype[int(cell.reduction)]
        params = SlotParams(c, config.affine, cell.reduction, name="slots")()
        params = jax.tree.map(lambda p: p.astype(s1.dtype), params)
        tap_shape = (s1.shape[0], cell.out_size, cell.out_size, c)
        eps = {"conv": self.perturb("conv_out", jnp.zeros((NUM_SLOTS, TAPS) + tap_shape,
                                                          s1.dtype))}
        if cell.reduction:
            half = (NUM_SLOTS, 2) + tap_shape[:-1] + (c // 2,)
            eps["factorized"] = self.perturb("factorized_out", jnp.zeros(half, s1.dtype))
        depthwise = ops.depthwise_conv2d if self.compiled else ops.depthwise_conv2d_reference

        def functions(stride):
            return slot_op_functions(self.bn, self.conv, depthwise, stride=stride, config=config,
                                     tap_shape=tap_shape, factorized=cell.reduction)

        strided = functions(2 if cell.reduction else 1)
        plain = functions(1) if cell.reduction else strided
        if self.compiled:
            nodes, taps = self._scan_slots(strided, plain, params, eps, s0, s1, slots, tap_shape)
        else:
            states, taps = [s0, s1], []
            for slot in range(NUM_SLOTS):
                source, op = slots[slot]
                choices = strided if cell.reduction and source < 2 else plain
                slot_params, slot_eps = jax.tree.map(lambda a, i=slot: a[i], (params, eps))
                y, slot_taps = choices[op](slot_params, states[source], slot_eps)
                taps.append(slot_taps)
                if slot % 2 == 0:
                    states.append(y)
                else:
                    states[-1] = states[-1] + y
            nodes, taps = jnp.stack(states[2:]), jax.tree.map(lambda *t: jnp.stack(t), *taps)
        self.sow("intermediates", "conv_out", taps["conv"])
        if cell.reduction:
            self.sow("intermediates", "factorized_out", taps["factorized"])
        self._sow_relu_inputs(s0, s1, nodes, taps["relu_mid"], slots)
        # concat(nodes, channels): node-major channel order, as torch.cat(states[2:], 1).
        out = jnp.moveaxis(nodes, 0, -2).reshape(tap_shape[:-1] + (NUM_NODES * c,))
        return self.block_output(out), bn_inputs

    def _scan_slots(self, strided, plain, params, eps, s0, s1, slots, tap_shape):
        """The slots as a scan over (params, eps, slot, input, op); carry: the 4 nodes.

        A normal cell's slot picks its input from [s0, s1, nodes] by a dynamic index; a
        reduce cell's picks a cell input and a node and switches over 14 branches (the 7
        ops with stride 2 on the cell input, then the 7 with stride 1 on the node).
        """
        inputs = jnp.stack([s0, s1])
        if self.cell.reduction:
            branches = tuple(functools.partial(lambda f, p, xs, e: f(p, xs[0], e), f)
                             for f in strided)
            branches += tuple(functools.partial(lambda f, p, xs, e: f(p, xs[1], e), f)
                              for f in plain)

        def step(nodes, per_slot):
            slot_params, slot_eps, slot, source, op = per_slot
            if self.cell.reduction:
                xs = (inputs[jnp.minimum(source, 1)], nodes[jnp.maximum(source - 2, 0)])
                y, taps = switched(branches, op + len(OPS) * (source >= 2), slot_params, xs,
                                   slot_eps)
            else:
                x = jnp.concatenate([inputs, nodes])[source]
                y, taps = switched(plain, op, slot_params, x, slot_eps)
            node = slot // 2
            nodes = jax.lax.dynamic_update_index_in_dim(nodes, nodes[node] + y, node, 0)
            return nodes, taps

        nodes = jnp.zeros((NUM_NODES,) + tap_shape, s1.dtype)
        return jax.lax.scan(step, nodes, (params, eps, jnp.arange(NUM_SLOTS), slots[:, 0],
                                          slots[:, 1]))

    def _sow_relu_inputs(self, s0, s1, nodes, relu_mid, slots):
        """ReLU modules per state: one per sep/dil conv reading it, and per stride-2 skip
        (FactorizedReduce); sep_conv's inner ReLU reads its first BN's output. None of
        these modules' class names (SepConv, DilConv, FactorizedReduce) contains "ReLU"."""
        sources = jnp.asarray([slots[s][0] for s in range(NUM_SLOTS)], jnp.int32)
        op_ids = jnp.asarray([slots[s][1] for s in range(NUM_SLOTS)], jnp.int32)
        is_sep = (op_ids == 3) | (op_ids == 4)
        reads = is_sep | (op_ids == 5) | (op_ids == 6)
        if self.cell.reduction:
            reads = reads | ((op_ids == SKIP) & (sources < 2))
        counts = jnp.stack([jnp.sum((sources == state) & reads) for state in range(5)])
        counts = counts.astype(jnp.int32)
        zeros = jnp.zeros_like(counts)
        self.sow("relu", "inputs", (jnp.stack([s0, s1]), counts[:2], zeros[:2]))
        # Node 3 is read by no op.
        self.sow("relu", "nodes", (nodes[:NUM_NODES - 1], counts[2:], zeros[2:]))
        self.sow("relu", "sep_mid", (relu_mid, is_sep.astype(jnp.int32),
                                     jnp.zeros(NUM_SLOTS, jnp.int32)))


class DartsNetwork(SpaceModule):
    """DARTS' NetworkCIFAR (no auxiliary head, no drop path) for a genotype."""

    config: Config = Config()

    @linen.compact
    def __call__(self, images: Array, genotype) -> Array:
        config = self.config
        stem = ConvBN(3, config.stem_multiplier * config.channels, 3, relu=False,
                      bn=self.bn, compiled=self.compiled, name="stem")(images)
        s0, s1 = None, self.block_output(stem, "stem_output")
        # The inputs of BatchNorms that follow no single layer (after the concatenated
        # FactorizedReduce halves of preprocessing), declared even when there are none.
        self.sow("features", "bn_input", None, init_fn=tuple, reduce_fn=lambda xs, _: xs)
        for cell in _cells(config):
            out, bn_inputs = Cell(cell, config, bn=self.bn, compiled=self.compiled,
                                  isolate_blocks=self.isolate_blocks,
                                  name=cell.name)(s0, s1, genotype)
            for bn_input in bn_inputs:
                self.sow("features", "bn_input", bn_input)
            s0, s1 = s1, out
        self.sow("features", "pre_gap", s1)
        logits = nn.Dense(config.num_classes, name="classifier")(nn.global_avg_pool(s1))
        logits = self.perturb("logits", logits)
        self.sow("intermediates", "logits", logits)
        return logits


# ---------------------------------------------------------------------------
# The layer table and the Network seam
# ---------------------------------------------------------------------------
def _layer_table(config: Config):
    """Layers in the reference network's module order, with their selectors.

    Returns the layers and, per layer, the cell type whose genotype selects it (-1:
    always active), the slot, the op that activates it, and whether it is active only
    when the slot reads a cell input (a reduce cell's FactorizedReduce).
    """
    layers, selectors = [], []

    def add(name, kind, shape, param_path, output_path, selector=(-1, 0, -1, False), **fields):
        fields.setdefault("batch_norm", kind == "conv")
        layers.append(Layer(name, kind, tuple(shape), tuple(param_path), tuple(output_path),
                            **fields))
        selectors.append(selector)

    stem = config.stem_multiplier * config.channels
    add("stem/conv", "conv", (3, 3, 3, stem), ("stem", "conv", "kernel"), ("stem", "conv_out"))
    for cell in _cells(config):
        name, c = cell.name, cell.channels
        if cell.reduction_prev:
            for index, path in enumerate("ab"):
                add(f"{name}/preprocess0/factorized_{path}", "conv", (1, 1, cell.c_pp, c // 2),
                    (name, "preprocess0", f"factorized_{path}", "kernel"),
                    (name, "preprocess0", "factorized_out"), output_index=(index,),
                    batch_norm=False)
        else:
            add(f"{name}/preprocess0/conv", "conv", (1, 1, cell.c_pp, c),
                (name, "preprocess0", "conv", "kernel"), (name, "preprocess0", "conv_out"))
        add(f"{name}/preprocess1/conv", "conv", (1, 1, cell.c_p, c),
            (name, "preprocess1", "conv", "kernel"), (name, "preprocess1", "conv_out"))
        for slot in range(NUM_SLOTS):
            for param, op, code, tap, index, batch_norm in _slot_layers(cell.reduction):
                tap_path = "factorized_out" if tap == "factorized" else "conv_out"
                add(f"{name}/slot{slot}/{param}", "conv", _shape(code, c),
                    (name, "slots", param, "kernel"), (name, tap_path),
                    (int(cell.reduction), slot, op, op == SKIP), param_index=(slot,),
                    output_index=(slot, index), batch_norm=batch_norm)
    add("classifier", "linear", (4 * _cells(config)[-1].channels, config.num_classes),
        ("classifier", "kernel"), ("logits",))
    return tuple(layers), np.asarray(selectors, dtype=object)


@functools.lru_cache(maxsize=None)
def network(config: Config = Config()) -> Network:
    """The compiled-once DARTS network for ``config`` (a :class:`Network`)."""
    return _make_network(config, compiled=True)


@functools.lru_cache(maxsize=None)
def reference_network(config: Config = Config()) -> Network:
    """The per-architecture reference: the same parameters, Python control flow, XLA's
    grouped convolutions. Its ``apply`` needs a concrete genotype."""
    return _make_network(config, compiled=False)


def _blocks(config: Config) -> tuple[Block, ...]:
    """The stem, then every cell (see :class:`Cell` for what a cell's input is)."""
    return (Block("stem", ("stem_output",)),) + tuple(
        Block(cell.name, (cell.name, "output"), input_path=(cell.name, "input"))
        for cell in _cells(config))


def _make_network(config: Config, *, compiled: bool) -> Network:
    layers, selectors = _layer_table(config)
    cell_types = np.asarray([s[0] for s in selectors], np.int32)
    slots = np.asarray([s[1] for s in selectors], np.int32)
    layer_ops = np.asarray([s[2] for s in selectors], np.int32)
    needs_cell_input = np.asarray([s[3] for s in selectors], bool)

    def active(genotype):
        genotype = jnp.asarray(genotype, jnp.int32)
        chosen = genotype[np.maximum(cell_types, 0), slots]  # (L, 2)
        selected = (chosen[:, 1] == layer_ops) & (~needs_cell_input | (chosen[:, 0] < 2))
        return jnp.where(cell_types < 0, True, selected)

    init_genotype = np.zeros(GENOTYPE_SHAPE, np.int32)
    init_genotype[:, :, 0] = np.arange(NUM_SLOTS) % 2  # any valid genotype
    return make_network(
        space="darts", config=config, compiled=compiled, module=DartsNetwork,
        init_genotype=init_genotype,
        traced=lambda genotype: jnp.asarray(genotype, jnp.int32),
        concrete=lambda genotype: tuple(tuple(tuple(int(v) for v in pair) for pair in cell)
                                        for cell in validate_genotype(genotype)),
        layers=layers, active=active, param_count=param_count, flops=flops,
        blocks=_blocks(config))


SPACE = SearchSpace(
    name="darts", Config=Config, num_archs=NUM_ARCHS,
    encode=encode, decode=decode, check_arch=check_arch, arch_strings=arch_strings,
    sample=sample, network=network, reference_network=reference_network,
    param_count=param_count, flops=flops, mutate=mutate,
    # NASLib's NB301 key is the canonical string itself.
    from_naslib=encode, to_naslib=decode, naslib_name="nasbench301",
)
