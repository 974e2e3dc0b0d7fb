"""MeCo: the minimum eigenvalue of the channel correlation of feature maps, one sample.

For a feature map of one sample (C channels x H*W positions), the C x C Pearson
correlation of its channels (positions as observations; NaN and inf set to 0, as a
constant channel gives) and that matrix's smallest eigenvalue; MeCo is the sum of those
minimum eigenvalues over the network's feature maps (NaN terms dropped). MeCo_opt
estimates each term from a random subset of 8 channels, scaled by C / 8.

Which sample (``meco_input``) and which feature maps (``meco_modules``):

* ``meco_input="batch"`` (default): the minibatch's first image, forwarded alone (a batch
  of one, BatchNorm on its statistics), at the network's own resolution. This is what
  the authors' NB201 correlation script (``correlation/NAS_Bench_201.py``) does: one real
  CIFAR image, batch size 1, 32 x 32. ``"gaussian"``: one standard-normal image of
  64 x 64 drawn from the key whatever the batch, as their foresight measure
  (``reference/meco/meco.py``) does. NB201's, NB101's and TransNAS-Bench-101 micro's
  networks end in global pooling and take a 64 x 64 image whatever their configured size
  (traced once in the scorer); DARTS' network is built for its configured size (static
  tap shapes), so there ``"gaussian"`` needs ``image_size=64`` and raises ``ValueError``
  otherwise.
* ``meco_modules="layers"`` (default): the output (pre-BatchNorm) of every active
  Conv/Linear layer of :attr:`~zcjax.network.Network.layers` and the output of every
  block of :attr:`~zcjax.network.Network.blocks` (stem, cells, reduction blocks): each
  feature map a weighted layer or a block produces, once. ``"every"``: every module of
  the PyTorch model, as the reference hooks ``net.named_modules()`` (NB201 only, see
  below): a BatchNorm's output counts three times (the ``ReLUConvBN``, its
  ``Sequential`` and the BN), an ``Identity`` counts its input again, a pooling op
  twice, containers as often as they nest. The clean default counts each map once and
  leaves out what only repeats another term under a wrapper's name.

BatchNorm runs on batch statistics (the reference's ``model.train()``), on the one
sample. Terms whose map has one position per sample (the logits, a global pool) have an
all-NaN correlation, zero after the cleaning, and contribute exactly 0; the
``"every"`` variant therefore omits the global pool, the classifier and the network
itself, which are all such terms when the network returns logits. (xautodl's NB201
``TinyNetwork`` returns the tuple ``(features, logits)``; the reference's hook on the
whole network then takes the 1-D pooled features, ``torch.linalg.eig`` of their 0-d
correlation raises and the reference returns NaN for every architecture. The authors'
NB201 runs use foresight's NB201 model, which returns the logits; that is what
``"every"`` reproduces, see tests/parity/test_meco_parity.py.)

``"every"`` on NB201 counts exactly the modules xautodl's per-architecture
``TinyNetwork`` has for the genotype (traced: counts are data): the stem (Sequential,
Conv, BN), per reduction block the block, its two ``ReLUConvBN`` (ReLU, Conv, BN and the
wrappers) and its downsample (Sequential, AvgPool, Conv), per cell the cell and its six
edge ops (``none``: a Zero module whose all-zero output scores 0; ``skip_connect``: its
input again; ``avg_pool_3x3``: POOLING and its AvgPool2d; a conv: its ``ReLUConvBN``),
and ``lastact`` (Sequential, BN, ReLU). The other spaces' PyTorch models are not mapped
module by module, so ``"every"`` raises ``ValueError`` there; ``"layers"`` runs on every
space.

MeCo_opt: per term, ``k = min(8, C)`` distinct channels drawn from the key and the
minimum eigenvalue of their correlation scaled by C / k (C / 8 whenever C >= 8; the
authors' ``random.sample(range(C), 8)`` fails below 8 channels, where zcjax takes every
channel, so the term is MeCo's). A feature map counted several times (``"every"``)
gets an independent draw per count, as each hooked module draws its own.

``meco_layers`` is the short form on the layer table with the ``activations`` pass
(BatchNorm per ``activation_bn``) on the first image of the whole-batch forward.

The eigenvalues are those of a symmetric matrix (``eigvalsh``, in ``ProxyInputs.wide``);
the reference's general ``torch.linalg.eig`` agrees up to round-off.

References:
  Jiang et al., "MeCo: Zero-Shot NAS with One Data and Single Forward Pass via Minimum
  Eigenvalue of Correlation", NeurIPS 2023.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from zcjax import linalg, nn
from zcjax.network import BLOCKS, block_outputs, get_path, layer_outputs
from zcjax.proxies.base import Pass, ProxyInputs, ProxyOutput, layer_sum, scalar
from zcjax.proxies.options import Option

Array = jax.Array
_MECO_STREAM = 17  # fold_in of the noise key: independent of the other proxies' draws
GAUSSIAN_SIZE = 64  # the reference's input is 1 x 3 x 64 x 64
OPT_CHANNELS = 8  # MeCo_opt's channel subset

MECO_INPUT = Option(
    "meco_input", "batch", choices=("batch", "gaussian"),
    doc='the one sample MeCo sees: ``"batch"`` (default) the minibatch\'s first image, '
        "forwarded alone, as the authors' NB201 script; ``\"gaussian\"`` one standard-"
        "normal 64 x 64 image drawn from the key, as their foresight measure.")
MECO_MODULES = Option(
    "meco_modules", "layers", choices=("layers", "every"),
    doc='which feature maps count: ``"layers"`` (default) every active Conv/Linear '
        'output and every block output, once each; ``"every"`` every module of the '
        "PyTorch model as the reference hooks them (NB201 only).")


class Term(NamedTuple):
    """One feature map of the sample and how many hooked modules output it.

    Attributes:
      feature: (H, W, C).
      count: traced int, how many times it counts (0: not in this architecture).
      most: static upper bound of ``count`` (MeCo_opt draws that many subsets).
    """

    feature: Array
    count: Array
    most: int


def channel_correlation(feature: Array, wide) -> Array:
    """The C x C Pearson correlation of one sample's channels (positions as observations),
    with the NaN of a constant channel set to 0 as the reference does. A one-channel layer
    (NB101 splits a cell's channels among its vertices) is the 1 x 1 matrix [[1]]."""
    channels = feature.reshape(-1, feature.shape[-1]).T.astype(wide)
    correlation = jnp.atleast_2d(jnp.corrcoef(channels))  # corrcoef of one row is a scalar
    return jnp.where(jnp.isfinite(correlation), correlation, jnp.zeros_like(correlation))


def minimum_eigenvalues(matrices: list[Array]) -> Array:
    """The smallest eigenvalue of each symmetric matrix, (len(matrices),)."""
    # One stack per matrix size; zcjax.linalg calls LAPACK per matrix (batched calls
    # running concurrently deadlock XLA:CPU).
    minimum = [None] * len(matrices)
    for size in sorted({m.shape[0] for m in matrices}):
        members = [i for i, m in enumerate(matrices) if m.shape[0] == size]
        eigenvalues = linalg.eigvalsh(jnp.stack([matrices[i] for i in members]))
        for row, index in enumerate(members):
            minimum[index] = eigenvalues[row, 0]
    return jnp.stack(minimum)


def meco_layers(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """Sum over active layers of the minimum eigenvalue of their channel correlation."""
    outputs = layer_outputs(inputs.network, passes["activations"]["intermediates"])
    matrices = [channel_correlation(output[0], inputs.wide) for output in outputs]
    return layer_sum(inputs, minimum_eigenvalues(matrices))


def meco_draws(inputs: ProxyInputs) -> tuple[Array, Array]:
    """MeCo's sample (1, H, W, 3) per ``meco_input`` and the key of MeCo_opt's subsets."""
    image_key, subset_key = jax.random.split(jax.random.fold_in(inputs.key, _MECO_STREAM))
    if inputs.options["meco_input"] == "batch":
        return inputs.images[:1], subset_key
    shape = (1, GAUSSIAN_SIZE, GAUSSIAN_SIZE, inputs.images.shape[-1])
    return jax.random.normal(image_key, shape, inputs.images.dtype), subset_key


def _once(feature: Array) -> Term:
    return Term(feature, jnp.ones((), jnp.int32), 1)


def _layer_terms(network, collections, genotype) -> list[Term]:
    active = network.active(genotype)
    terms = [Term(output[0], active[index].astype(jnp.int32), 1)
             for index, output in enumerate(layer_outputs(network, collections["intermediates"]))]
    if network.blocks:
        terms += [_once(output[0]) for output in block_outputs(network, collections[BLOCKS])]
    return terms


def _bn(x: Array, params: Mapping[str, Any], index=()) -> Array:
    """A batch-statistics BatchNorm of (H, W, C) with ``params[scale/bias][index]``."""
    scale, bias = params["scale"][index], params["bias"][index]
    return nn.batch_norm(x[None], scale.astype(x.dtype), bias.astype(x.dtype), "batch")[0]


def _nb201_every_terms(inputs: ProxyInputs, collections, genotype) -> list[Term]:
    """Every module of xautodl's NB201 TinyNetwork for this genotype (see the module
    docstring), from one captured forward: layer outputs, block inputs and outputs, the
    cells' nodes and the head; BatchNorm and pooling outputs recomputed from them."""
    params, inter, blocks = inputs.params, collections["intermediates"], collections[BLOCKS]
    first = lambda tree, path: get_path(tree, path)[0]  # noqa: E731 - sow's 1-tuples
    one = jnp.ones((), jnp.int32)
    terms = [Term(first(inter, ("stem", "conv_out"))[0], one, 1),       # stem.0 Conv
             Term(first(blocks, ("stem_output",))[0], 2 * one, 2)]      # stem, stem.1 BN

    def relu_conv_bn(x, conv_out, bn_params, index=(), count=one):
        """ReLUConvBN on x: its ReLU, Conv, and BN (x3: wrapper, Sequential, BN)."""
        return [Term(jax.nn.relu(x), count, 1), Term(conv_out, count, 1),
                Term(_bn(conv_out, bn_params, index), 3 * count, 3)]

    genotype = [jnp.asarray(op, jnp.int32) for op in genotype]
    stages = sorted(int(name.split("_")[1]) for name in params if name.startswith("cells_"))
    for stage in stages:
        if stage:
            block = f"reduction_{stage}"
            x = first(blocks, (block, "input"))[0]
            conv_a = first(inter, (block, "conv_a", "conv_out"))[0]
            conv_b = first(inter, (block, "conv_b", "conv_out"))[0]
            bn_a = _bn(conv_a, params[block]["conv_a"]["bn"])
            terms += relu_conv_bn(x, conv_a, params[block]["conv_a"]["bn"])
            terms += relu_conv_bn(bn_a, conv_b, params[block]["conv_b"]["bn"])
            terms += [Term(nn.avg_pool(x[None], 2, 2)[0], one, 1),        # downsample.0
                      Term(first(inter, (block, "shortcut_out"))[0], 2 * one, 2),
                      _once(first(blocks, (block, "output"))[0])]
        stack = f"cells_{stage}"
        conv_outputs = first(inter, (stack, "conv_out"))   # (cells, edges, N, H, W, C)
        nodes = first(collections["relu"], (stack, "nodes"))[0]  # (cells, 3, N, H, W, C)
        outputs = first(blocks, (stack, "output"))
        for cell in range(conv_outputs.shape[0]):
            terms.append(_once(outputs[cell, 0]))
            for source in range(nodes.shape[1]):
                edges = [e for e, (_, s) in enumerate(_EDGES) if s == source]
                count = lambda op: sum(jnp.asarray(genotype[e] == op, jnp.int32)  # noqa: E731
                                       for e in edges)
                node = nodes[cell, source, 0]
                terms += [Term(node, count(_SKIP), len(edges)),                     # Identity
                          Term(nn.avg_pool(node[None], 3, 1, 1)[0], 2 * count(_POOL),
                               2 * len(edges)),                                      # POOLING
                          Term(jax.nn.relu(node), count(_CONV1) + count(_CONV3), len(edges))]
            for edge, (target, source) in enumerate(_EDGES):
                conv = jnp.asarray((genotype[edge] == _CONV1) | (genotype[edge] == _CONV3),
                                   jnp.int32)
                edge_params = params[stack][f"edge_{target}_{source}"]
                out = conv_outputs[cell, edge, 0]
                is_1x1 = genotype[edge] == _CONV1
                bn_params = {leaf: jnp.where(is_1x1, edge_params["bn1x1"][leaf][cell],
                                             edge_params["bn3x3"][leaf][cell])
                             for leaf in ("scale", "bias")}
                terms += [Term(out, conv, 1), Term(_bn(out, bn_params), 3 * conv, 3)]
    head = first(collections["relu"], ("head",))[0][0]
    terms += [_once(head),                                                  # lastact.0 BN
              Term(first(collections["features"], ("pre_gap",))[0], 2 * one, 2)]
    return terms


_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # NB201's edges (to, from)
_SKIP, _CONV1, _CONV3, _POOL = 1, 2, 3, 4  # NB201's op indices (none is 0)


def meco_terms(inputs: ProxyInputs, computed=None) -> list[Term]:
    """One forward of MeCo's sample (batch-statistics BatchNorm) and its feature maps.

    Raises:
      ValueError: ``meco_modules="every"`` on a space other than NB201.
    """
    network = inputs.network
    modules = inputs.options["meco_modules"]
    if modules == "every" and network.space != "nb201":
        raise ValueError(
            f"meco_modules='every' maps every PyTorch module of NB201's TinyNetwork and is "
            f"available on nb201 only, not on {network.space}; use meco_modules='layers'")
    image, _ = meco_draws(inputs)

    def forward():
        return network.apply(inputs.variables, inputs.genotype, image, bn="batch",
                             capture=True)

    if image.shape[1:3] != inputs.images.shape[1:3]:
        try:
            jax.eval_shape(forward)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"meco_input='gaussian' feeds one {GAUSSIAN_SIZE}x{GAUSSIAN_SIZE} image, which "
                f"the {network.space} network, built for {network.image_size}x"
                f"{network.image_size} inputs, cannot take; build it for {GAUSSIAN_SIZE}x"
                f"{GAUSSIAN_SIZE} (Config image_size={GAUSSIAN_SIZE}) or use "
                f"meco_input='batch'") from error
    _, collections = forward()
    if modules == "every":
        genotype = jnp.asarray(inputs.genotype, jnp.int32)
        return _nb201_every_terms(inputs, collections,
                                  [genotype[e] for e in range(len(_EDGES))])
    return _layer_terms(network, collections, inputs.genotype)


def _weighted_sum(values: Array, counts: Array) -> Array:
    """sum of count * value, NaN terms (and terms that do not count) dropped."""
    keep = (counts > 0) & ~jnp.isnan(values)
    return jnp.sum(jnp.where(keep, counts.astype(values.dtype) * values, 0))


def meco(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """The sum over feature maps of the minimum eigenvalue of their channel correlation."""
    terms = passes["meco_terms"]
    values = minimum_eigenvalues([channel_correlation(t.feature, inputs.wide) for t in terms])
    return scalar(inputs, _weighted_sum(values, jnp.stack([t.count for t in terms])))


def opt_channels(key: Array, term: int, copy: int, channels: int) -> Array:
    """The ``min(8, channels)`` channels MeCo_opt draws for copy ``copy`` of term ``term``."""
    key = jax.random.fold_in(jax.random.fold_in(key, term), copy)
    return jax.random.permutation(key, channels)[:min(OPT_CHANNELS, channels)]


def meco_opt(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
    """MeCo with each term from a random subset of 8 channels, scaled by C / 8."""
    _, key = meco_draws(inputs)
    matrices, scales, counts = [], [], []
    for index, term in enumerate(passes["meco_terms"]):
        channels = term.feature.shape[-1]
        for copy in range(term.most):
            subset = opt_channels(key, index, copy, channels)
            matrices.append(channel_correlation(term.feature[..., subset], inputs.wide))
            scales.append(channels / subset.shape[0])
            counts.append(jnp.asarray(copy < term.count, jnp.int32))
    values = minimum_eigenvalues(matrices) * jnp.asarray(scales, inputs.wide)
    return scalar(inputs, _weighted_sum(values, jnp.stack(counts)))


TERMS_PASS = Pass("meco_terms", meco_terms, options=(MECO_INPUT, MECO_MODULES))
