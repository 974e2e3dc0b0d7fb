"""VKDNW: the entropy of the empirical Fisher spectrum's deciles, and its size term.

The reference is ``NB201/ZeroShotProxy/compute_vkdnw_score.py`` of the authors' code
(commit 6901b65, GPL-3.0; zcjax's version is written from the formulas, never copied).

What it computes, for one architecture:

1. Weights: Kaiming-normal (fan-in, ReLU gain), BN scale 1, biases 0 (``sota_init``).
   Input: a standard-normal batch of the minibatch's shape (``vkdnw_inputs``): the
   authors' NB201 runs call it with ``trainloader=None``.
2. theta: from each of the first ``vkdnw_tensors`` (128) parameter tensors of the
   network, in PyTorch's ``named_parameters()`` order, ``vkdnw_entries`` entries at
   ``floor(linspace(0, n - 1, entries))`` of the tensor flattened in PyTorch's layout.
3. Per sample n, the Jacobian J_n (C x |theta|) of the logits with BatchNorm in eval mode
   at initialisation (running mean 0, variance 1: ``bn="init"``; samples do not couple),
   and A_n = L_n J_n with L_n the (detached) lower-triangular factor of the covariance
   diag(p) - p p^T of the alpha-smoothed probabilities p = softmax * (1 - alpha) + alpha / C
   (Tanabe and Sagae's closed form: L_ii = 1, L_ij = -p_i / q_j below the diagonal, column
   j scaled by sqrt(p_j q_j / q_{j-1}), q_j = 1 - sum_{k<=j} p_k, q_{C-1} = 0).
4. F = mean_n A_n^T A_n; its singular values; their deciles q_1..q_9 (linear
   interpolation, torch.quantile's default); t = q / (sum |q| + 1e-10);
   VKDNW = -sum t log(t + 1e-10), in [0, log 9].

Reference details reproduced: alpha is a float16 0.05, so the smoothing uses
1 - alpha = 0.9501953125 and alpha / C rounded to float16 (the probabilities sum to
slightly more than 1); L multiplies the Jacobian from the left (F = J^T L^T L J, as the
reference has it). Differences: an SVD that fails makes the reference return 0 (it
catches the error and uses two zero eigenvalues); zcjax returns the non-finite value.
The reference's own default ``p=0`` selects no entry and fails; the authors' earlier
version of the same code took one entry per tensor, the first, which ``p=1`` (and the
default ``vkdnw_entries=1``) reproduces. On torch 2.x the reference's in-place
write into a captured parameter is refused inside ``torch.func.jacrev``; the parity test
says how it runs it.

PyTorch's parameter order, in terms of zcjax's parameters: the layer table lists the
Conv/Linear layers in the PyTorch module order, and a module's parameters follow its
layer: for each active layer, its kernel (``weight``), then the BatchNorm it feeds
(``weight`` = scale, ``bias``), then its own bias. The BatchNorm of a layer is its
sibling module by the spaces' naming (``conv``/``conv3x3`` -> ``bn``/``bn3x3``,
``input1_conv`` -> ``input1_bn``, ``sep3_pw1`` -> ``sep3_bn1``, and a factorized
reduce's BN after its second conv); a BatchNorm that follows no layer at the top level
of the parameters (NB201's ``lastact``) comes before the classifier. For NB201 this is
exactly ``TinyNetwork.named_parameters()``: stem conv, BN; per cell the chosen convs'
conv, BN in edge order; each reduction block's conv_a, BN, conv_b, BN, shortcut conv;
lastact BN; classifier weight, bias. A kernel's entry k (PyTorch's OIHW / (out, in)
flattening) is zcjax's HWIO / (in, out) entry at the transposed index. Only the active
network's tensors count, so the first 128 are those of PyTorch's per-architecture model.

``vkdnw_dim`` is the reference's ``len(list(model.named_parameters()))``: the number of
parameter tensors of that per-architecture model, traceable in the genotype. NB201:
21 (stem 3, two reduction blocks 7 each, lastact 2, classifier 2) + 3 per conv edge of
each of the 3N cells.

References:
  Tybl and Neumann, "Training-free Neural Architecture Search through Variance of
  Knowledge of Deep Network Weights", CVPR 2025.
  Tanabe and Sagae, "An exact Cholesky decomposition and the generalized inverse of the
  variance-covariance matrix of the multinomial distribution", JRSS B 1992.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zcjax import linalg
from zcjax.network import get_path
from zcjax.proxies import reinit
from zcjax.proxies.base import ProxyInputs, ProxyOutput, scalar
from zcjax.proxies.options import Option

Array = jax.Array
_VKDNW_STREAM = 13  # fold_in of the noise key: independent of the other proxies' draws
_EPS = 1e-10
_SAMPLES_PER_STEP = 8  # per-sample Jacobians computed 8 at a time (bounds the memory)

VKDNW_INPUTS = Option(
    "vkdnw_inputs", "gaussian", choices=("gaussian", "batch"),
    doc='what VKDNW sees: ``"gaussian"`` (default) a standard-normal batch of the '
        "minibatch's shape drawn from the key, as the authors' NB201 evaluation "
        '(``trainloader=None``); ``"batch"`` the minibatch itself.')
VKDNW_TENSORS = Option(
    "vkdnw_tensors", 128,
    doc="how many parameter tensors (the first, in PyTorch's order) theta samples from "
        "(the reference's ``params_grad_len``, 128); at least 1.")
VKDNW_ENTRIES = Option(
    "vkdnw_entries", 1,
    doc="entries per tensor, evenly spaced (the reference's ``p``; 1 = the first entry, "
        "what the authors' earlier code took; the reference's default 0 selects none and "
        "fails); at least 1.")
OPTIONS = (reinit.SOTA_INIT, VKDNW_INPUTS, VKDNW_TENSORS, VKDNW_ENTRIES)


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One parameter tensor of PyTorch's model, as zcjax holds it.

    Attributes:
      path: the leaf's path in ``params``; index: into the leaf (stacked cells).
      layer: the layer whose activity it follows (-1: always there).
      kernel: whether it is a kernel (its flat order is PyTorch's transposed layout).
    """

    path: tuple[str, ...]
    index: tuple[int, ...]
    layer: int
    kernel: bool


def _bn_names(module: str) -> list[str]:
    """Candidate names of the BatchNorm that follows the layer named ``module``."""
    names = []
    if module.startswith("conv"):
        names.append("bn" + module[len("conv"):])
    if module.endswith("_conv"):
        names.append(module[:-len("_conv")] + "_bn")
    if "_pw" in module:
        names.append(module.replace("_pw", "_bn"))
    return names


def parameter_tensors(network, params: Mapping[str, Any]) -> tuple[Tensor, ...]:
    """Every candidate parameter tensor, in PyTorch's ``named_parameters()`` order."""
    tensors: list[Tensor] = []
    claimed = set()

    def module_of(path):
        try:
            return get_path(params, path)
        except (KeyError, TypeError):
            return None

    for position, layer in enumerate(network.layers):
        parent, name = layer.param_path[:-2], layer.param_path[-2]
        tensors.append(Tensor(layer.param_path, layer.param_index, position, True))
        if "bias" in module_of(layer.param_path[:-1]):
            bias = (layer.param_path[:-1] + ("bias",))
        else:
            bias = None
        bn_names = _bn_names(name) if layer.batch_norm else []
        if name == "factorized_b":  # FactorizedReduce: conv_1, conv_2, then one BN
            bn_names = ["bn_factorized"]
        for bn in bn_names:
            module = module_of(parent + (bn,))
            if module is not None and "scale" in module:
                for leaf in ("scale", "bias"):
                    tensors.append(Tensor(parent + (bn, leaf), layer.param_index, position, False))
                claimed.add(parent + (bn,))
                break
        if bias is not None:
            tensors.append(Tensor(bias, layer.param_index, position, False))
    # A top-level BatchNorm no layer feeds (NB201's lastact) sits before the classifier.
    free = [(name,) for name, module in params.items()
            if isinstance(module, Mapping) and "scale" in module and (name,) not in claimed]
    last = max(i for i, t in enumerate(tensors) if t.layer == len(network.layers) - 1 and t.kernel)
    head = [Tensor(path + (leaf,), (), -1, False) for path in free for leaf in ("scale", "bias")]
    return tuple(tensors[:last] + head + tensors[last:])


def _torch_entries(shape: tuple[int, ...], kernel: bool, count: int) -> np.ndarray:
    """(count, ndim) zcjax indices of ``floor(linspace(0, n - 1, count))`` of the tensor
    flattened as PyTorch holds it (kernels (O, I, *spatial) for zcjax's (*spatial, I, O))."""
    size = int(np.prod(shape))
    flat = np.floor(np.linspace(0, size - 1, count)).astype(np.int64)
    if not kernel or len(shape) < 2:
        return np.stack(np.unravel_index(flat, shape), axis=1)
    torch_shape = (shape[-1], shape[-2]) + tuple(shape[:-2])
    o, i, *spatial = np.unravel_index(flat, torch_shape)
    return np.stack([*spatial, i, o], axis=1)


def tensor_active(network, tensors: tuple[Tensor, ...], genotype) -> Array:
    """(T,) bool: the tensors PyTorch's per-architecture model holds."""
    active = network.active(genotype)
    layers = np.asarray([max(t.layer, 0) for t in tensors])
    always = np.asarray([t.layer < 0 for t in tensors])
    return jnp.where(always, True, active[layers])


def vkdnw_dim(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """The number of parameter tensors of the per-architecture PyTorch model."""
    tensors = parameter_tensors(inputs.network, inputs.params)
    count = jnp.sum(tensor_active(inputs.network, tensors, inputs.genotype))
    return scalar(inputs, count.astype(inputs.wide))


def cholesky_factor(logits: Array) -> Array:
    """(N, C, C) lower-triangular L with L L^T = diag(p) - p p^T, p the alpha-smoothed
    softmax (float16 alpha, as the reference)."""
    classes = logits.shape[-1]
    alpha = np.float16(0.05)
    keep, floor = np.float16(np.float16(1) - alpha), np.float16(alpha / np.float16(classes))
    prob = jax.nn.softmax(logits, axis=-1) * float(keep) + float(floor)
    q = (1 - jnp.cumsum(prob, axis=-1)).at[:, -1].set(0)
    q_previous = jnp.concatenate([jnp.ones_like(q[:, :1]), q[:, :-1]], axis=-1)
    d = jnp.sqrt(prob * q / q_previous)
    below = np.tril(np.ones((classes, classes), bool), -1)
    safe_q = jnp.where(q == 0, 1, q)
    off = jnp.where(below, -prob[:, :, None] / safe_q[:, None, :], 0)
    factor = off + np.eye(classes)
    return factor * d[:, None, :]


def _quantiles(values_desc: Array, count: Array, levels: np.ndarray) -> Array:
    """torch.quantile (linear) of the first ``count`` entries of a descending vector."""
    positions = jnp.asarray(levels, values_desc.dtype) * (count - 1)
    below = jnp.floor(positions)
    weight = positions - below
    below = below.astype(jnp.int32)
    above = jnp.minimum(below + 1, count - 1)

    def ascending(i):
        return values_desc[count - 1 - i]

    low, high = ascending(below), ascending(above)
    return low + weight * (high - low)


def spectrum_entropy(singular_desc: Array, count: Array) -> Array:
    """-sum t log(t + 1e-10) of the normalised deciles of the first ``count`` values."""
    deciles = _quantiles(singular_desc, count, np.arange(1, 10) / 10)
    share = deciles / (jnp.sum(jnp.abs(deciles)) + _EPS)
    return -jnp.sum(share * jnp.log(share + _EPS))


def vkdnw_draws(inputs: ProxyInputs) -> tuple[Mapping[str, Any], Array]:
    """VKDNW's variables (``sota_init``) and images (``vkdnw_inputs``)."""
    weights_key, images_key = jax.random.split(jax.random.fold_in(inputs.key, _VKDNW_STREAM))
    images = inputs.images
    if inputs.options["vkdnw_inputs"] == "gaussian":
        images = jax.random.normal(images_key, images.shape, images.dtype)
    return reinit.sota_variables(inputs, weights_key), images


def fisher(inputs: ProxyInputs) -> tuple[Array, Array]:
    """The empirical Fisher over all candidate entries (unselected ones zeroed), (M, M)
    in the wide dtype, and the number of selected entries."""
    network, genotype = inputs.network, inputs.genotype
    tensors_wanted, entries = inputs.options["vkdnw_tensors"], inputs.options["vkdnw_entries"]
    if tensors_wanted < 1 or entries < 1:
        raise ValueError("vkdnw_tensors and vkdnw_entries must be at least 1, got "
                         f"{tensors_wanted} and {entries}")
    variables, images = vkdnw_draws(inputs)
    params = variables["params"]
    tensors = parameter_tensors(network, params)
    # Scatter positions per leaf: delta k adds to entry (index + entry) of its leaf.
    by_leaf: dict[tuple[str, ...], list[np.ndarray]] = {}
    offsets: dict[tuple[str, ...], list[np.ndarray]] = {}
    for position, tensor in enumerate(tensors):
        leaf = get_path(params, tensor.path)
        shape = leaf.shape[len(tensor.index):]
        within = _torch_entries(shape, tensor.kernel, entries)
        full = np.concatenate([np.tile(np.asarray(tensor.index, np.int64), (entries, 1)),
                               within], axis=1)
        by_leaf.setdefault(tensor.path, []).append(full)
        offsets.setdefault(tensor.path, []).append(position * entries + np.arange(entries))
    scatter = {path: (tuple(np.concatenate(rows).T), np.concatenate(offsets[path]))
               for path, rows in by_leaf.items()}

    def perturbed(deltas):
        # Adding (not setting) keeps each duplicate entry's own derivative, as the
        # reference's index_put backward does.
        def visit(path, leaf):
            names = tuple(entry.key for entry in path)
            if names not in scatter:
                return leaf
            index, where = scatter[names]
            return leaf.at[index].add(deltas[where].astype(leaf.dtype))
        return jax.tree_util.tree_map_with_path(visit, params)

    size = len(tensors) * entries
    dtype = jax.tree.leaves(params)[0].dtype

    def sample_jacobian(image):
        def logits(deltas):
            return network.apply({"params": perturbed(deltas)}, genotype, image[None],
                                 bn="init")[0]
        return jax.jacrev(logits)(jnp.zeros(size, dtype))

    jacobian = jax.lax.map(sample_jacobian, images, batch_size=_SAMPLES_PER_STEP)
    active = tensor_active(network, tensors, genotype)
    selected = active & (jnp.cumsum(active) <= tensors_wanted)
    column = jnp.repeat(selected, entries)
    wide = inputs.wide
    jacobian = jnp.where(column, jacobian.astype(wide), 0)
    logits = network.apply(variables, genotype, images, bn="init")
    factor = jax.lax.stop_gradient(cholesky_factor(logits.astype(wide)))
    whitened = factor @ jacobian
    matrix = jnp.mean(jnp.swapaxes(whitened, 1, 2) @ whitened, axis=0)
    return matrix, jnp.sum(column)


def vkdnw(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """The entropy of the normalised deciles of the empirical Fisher's singular values."""
    matrix, count = fisher(inputs)
    # Unselected entries are zero rows and columns: zero singular values at the end.
    singular = linalg.svdvals(matrix)
    return scalar(inputs, spectrum_entropy(singular, count))
