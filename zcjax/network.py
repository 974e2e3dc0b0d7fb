"""The seam between search spaces and proxies.

A search space describes itself to the proxies as a :class:`Network`: how to apply the
network to a genotype, the fixed table of its Conv/Linear layers, and which of those
layers a given genotype uses. Proxies see nothing else of a space, so per-layer vectors
computed by any proxy are aligned with ``Network.layers`` by construction: entry ``l`` of
a saliency vector and entry ``l`` of a log-determinant vector are the same layer.

Collections the network's Flax module writes when asked (``capture=True``):

- ``intermediates``: every layer's output before BatchNorm (``Layer.output_path``);
- ``relu``: ``(relu_inputs, relu_modules, wrapper_modules)`` triples: ``relu_inputs`` has
  shape ``sites + (N, ...)`` and the two int counts shape ``sites`` (leading axes of
  stacked sites, possibly none). ``relu_modules`` is how many ReLU modules of the
  reference network read that tensor for this genotype (0 when none does);
  ``wrapper_modules`` how many reference modules whose class name contains "ReLU"
  without being a ReLU (NB201's ``ReLUConvBN``) receive it as their input: the
  references' NASWOT hooks every module whose class name contains "ReLU", so those
  count too.
- ``features``: ``pre_gap``, the feature map right before global average pooling, and
  ``bn_input``, the input of every BatchNorm that does not directly follow a table layer
  (the head's); with the outputs of layers whose ``batch_norm`` is set, these are the
  inputs of all the network's BatchNorms (zen's BN scaling).

- ``blocks``: the network's block sequence (:attr:`Network.blocks`): the stem's output,
  then each cell's (or reduction block's) input as it reads it and its output. AZ-NAS's
  expressivity reads the outputs.

It also honours a ``perturbations`` collection (Flax ``perturb``) at each layer output,
with the same paths as ``intermediates``: the gradient with respect to a zero
perturbation is the gradient with respect to that layer's output (fisher). Likewise a
``block_perturbations`` collection at each block input, with the paths of the ``blocks``
inputs. With ``apply(..., isolate_blocks=True)`` every block reads its input through
``stop_gradient`` (values unchanged), so one backward of ``sum_k <g_k, output_k>`` gives,
at block k's input perturbation, exactly the VJP of block k alone: AZ-NAS's trainability
for every block from one forward and one backward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
BLOCKS = "blocks"  # the capture collection of block inputs and outputs
BLOCK_PERTURBATIONS = "block_perturbations"  # zero perturbations at the block inputs
Genotype = Any  # an int array (or anything jnp.asarray turns into one)
Variables = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Layer:
    """One Conv2d or Linear layer of the network.

    Attributes:
      name: unique, human-readable ("cells_1_3/edge_2_1/conv3x3").
      kind: "conv" or "linear".
      shape: the weight's shape (HWIO for convs, (in, out) for linear).
      param_path: path of the weight inside ``variables["params"]``.
      output_path: path of the layer's output inside the ``intermediates`` and
        ``perturbations`` collections.
      param_index: index into the array at ``param_path`` (layers of scanned cells are
        stacked on leading axes); ``()`` for the whole array.
      output_index: index into the array at ``output_path``. Two layers may share one
        output when at most one of them is active for any genotype (the candidate convs
        of one edge).
      batch_norm: whether a BatchNorm directly follows the layer (its output is that
        BatchNorm's input).
    """

    name: str
    kind: Literal["conv", "linear"]
    shape: tuple[int, ...]
    param_path: tuple[str, ...]
    output_path: tuple[str, ...]
    param_index: tuple[int, ...] = ()
    output_index: tuple[int, ...] = ()
    batch_norm: bool = False

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def fan_in(self) -> int:
        """Weights per output channel (C_in * kh * kw for a conv, in for linear)."""
        return int(np.prod(self.shape[:-1]))


@dataclasses.dataclass(frozen=True)
class Block:
    """One step of the network's block sequence: the stem, a cell or a reduction block.

    Attributes:
      name: unique, human-readable ("cells_1/3", "reduction_2").
      output_path: path of its output in the ``blocks`` collection.
      output_index: index into that array (cells of one scanned stack are stacked).
      input_path: path of its input in ``blocks`` and in ``block_perturbations``: the
        previous block's output as this block reads it. None for the stem (its input is
        the image).
      input_index: index into the input array.
    """

    name: str
    output_path: tuple[str, ...]
    output_index: tuple[int, ...] = ()
    input_path: tuple[str, ...] | None = None
    input_index: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Network:
    """A search space's network, compiled once for the whole space.

    Attributes:
      space: the space's name.
      layers: the fixed Conv/Linear layer table.
      init: ``init(key, images) -> variables`` (PyTorch-default initialisation).
      apply: ``apply(variables, genotype, images, *, bn="batch", reduction_bn=None,
        capture=False, isolate_blocks=False)`` -> logits, or ``(logits, collections)``
        when ``capture``. ``bn`` is a :data:`zcjax.nn.BatchNormMode`; ``reduction_bn``
        overrides it inside the residual reduction blocks (foresight's synflow keeps BN
        there); ``isolate_blocks`` cuts the gradient between blocks (see above).
      active: ``active(genotype) -> bool[len(layers)]``: the layers this genotype uses.
      param_count: ``param_count(genotype)``: parameters of the active network (the
        benchmark's convention; traceable).
      flops: ``flops(genotype)``: FLOPs of the active network for one image (traceable).
      num_classes: width of the classifier.
      image_size: expected input height and width.
      blocks: the block sequence, in forward order, the stem first (AZ-NAS's feature
        maps: the stem's output and every cell's).
    """

    space: str
    layers: tuple[Layer, ...]
    init: Callable[..., Variables]
    apply: Callable[..., Any]
    active: Callable[[Genotype], Array]
    param_count: Callable[[Genotype], Any]
    flops: Callable[[Genotype], Any]
    num_classes: int
    image_size: int
    blocks: tuple[Block, ...] = ()

    def layer_index(self, name: str) -> int:
        for index, layer in enumerate(self.layers):
            if layer.name == name:
                return index
        raise KeyError(f"no layer named {name!r} in the {self.space} layer table")


def get_path(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """Follow ``path`` into a nested mapping."""
    for key in path:
        tree = tree[key]
    return tree


def layer_weights(network: Network, params: Mapping[str, Any]) -> list[Array]:
    """The weight of every layer, aligned with ``network.layers``."""
    return [get_path(params, layer.param_path)[layer.param_index] for layer in network.layers]


def layer_outputs(network: Network, intermediates: Mapping[str, Any]) -> list[Array]:
    """The (pre-BN) output of every layer, aligned with ``network.layers``.

    ``sow`` stores a tuple of values per name; each layer is called once, so take [0].
    """
    return [get_path(intermediates, layer.output_path)[0][layer.output_index]
            for layer in network.layers]


def block_outputs(network: Network, blocks: Mapping[str, Any]) -> list[Array]:
    """Every block's output from a captured ``blocks`` collection, in forward order."""
    return [get_path(blocks, block.output_path)[0][block.output_index]
            for block in network.blocks]


def block_inputs(network: Network, tree: Mapping[str, Any], *, sown: bool = True) -> list:
    """Every block's input (None for the stem) from a ``blocks`` collection (``sown``) or
    a tree of the ``block_perturbations``' paths (their gradients, ``sown=False``)."""
    values = []
    for block in network.blocks:
        if block.input_path is None:
            values.append(None)
            continue
        value = get_path(tree, block.input_path)
        values.append((value[0] if sown else value)[block.input_index])
    return values


def zero_block_perturbations(network: Network, blocks: Mapping[str, Any]) -> dict:
    """Zeros at every block input's path (a ``block_perturbations`` tree), shaped as the
    inputs in a captured (or ``eval_shape``'d) ``blocks`` collection."""
    tree: dict = {}
    for block in network.blocks:
        if block.input_path is None:
            continue
        node = tree
        for key in block.input_path[:-1]:
            node = node.setdefault(key, {})
        sown = get_path(blocks, block.input_path)[0]
        node[block.input_path[-1]] = jnp.zeros(sown.shape, sown.dtype)
    return tree


def block_vjp(network: Network, variables: Variables, genotype: Genotype, images: Array, *,
              bn: str = "batch") -> tuple[list[Array], Callable[[list[Array]], list]]:
    """Every block's output and the pullback of the isolated blocks.

    Returns:
      ``(outputs, pullback)``: ``outputs`` per block in forward order (the stem's first);
      ``pullback(cotangents)``, one cotangent per output, gives per block the gradient at
      its input (None for the stem) of ``sum_k <cotangent_k, output_k>`` with every block
      reading its input through ``stop_gradient``: block k's VJP alone at its cotangent.

    Raises:
      ValueError: the network declares no blocks.
    """
    if not network.blocks:
        raise ValueError(f"the {network.space} network declares no blocks (Network.blocks), "
                         "which the block-wise proxies (AZ-NAS's components) read")
    shapes = jax.eval_shape(
        lambda: network.apply(variables, genotype, images, bn=bn, capture=True)[1])

    def outputs_of(perturbations):
        _, collections = network.apply({**variables, BLOCK_PERTURBATIONS: perturbations},
                                       genotype, images, bn=bn, capture=True,
                                       isolate_blocks=True)
        return block_outputs(network, collections[BLOCKS])

    outputs, pullback = jax.vjp(outputs_of, zero_block_perturbations(network, shapes[BLOCKS]))
    return outputs, lambda cotangents: block_inputs(network, pullback(cotangents)[0],
                                                    sown=False)


def sown_values(collection: Mapping[str, Any]) -> list[Any]:
    """Every value ``sow`` stored in a collection (it keeps a tuple of values per name)."""
    containers = jax.tree.leaves(collection, is_leaf=lambda node: isinstance(node, tuple))
    return [value for container in containers for value in container]


def masked(values: Array, active: Array) -> Array:
    """Zero the entries of inactive layers (a NaN in an inactive layer never leaks)."""
    return jnp.where(active, values, jnp.zeros_like(values))
