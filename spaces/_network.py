"""Turning a space's Flax module into a :class:`zcjax.network.Network` (private).

What every space needs between its Flax module and the seam: a base module carrying the
two settings every space module has (the BatchNorm mode and compiled vs reference form),
the Conv-BN layer most networks start with, a layer table with per-layer selectors, the
active mask of a table whose layers sit on edges, and the factory that builds the
compiled-once network and its per-architecture reference from one module.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from zcjax import initialisation, nn
from zcjax.network import BLOCK_PERTURBATIONS, BLOCKS, Block, Layer, Network

Array = jax.Array
# Every tap collection a network writes when asked (see zcjax.network).
TAP_COLLECTIONS = ["intermediates", "relu", "features", BLOCKS]


class SpaceModule(linen.Module):
    """A space's Flax module: its BatchNorm mode, compiled (genotype as data) or
    reference (Python control flow, stock autodiff) form, and whether blocks read their
    inputs through ``stop_gradient`` (:mod:`zcjax.network`). The fields are keyword-only,
    so subclasses list their own fields first."""

    bn: nn.BatchNormMode = dataclasses.field(default="batch", kw_only=True)
    compiled: bool = dataclasses.field(default=True, kw_only=True)
    isolate_blocks: bool = dataclasses.field(default=False, kw_only=True)

    def block_input(self, x: Array, name: str = "input") -> Array:
        """A block's input as the block reads it: cut from the graph when isolating,
        perturbable (``block_perturbations``) and sown (``blocks``) under ``name``."""
        if self.isolate_blocks:
            x = jax.lax.stop_gradient(x)
        x = self.perturb(name, x, collection=BLOCK_PERTURBATIONS)
        self.sow(BLOCKS, name, x)
        return x

    def block_output(self, x: Array, name: str = "output") -> Array:
        """Sow a block's output (``blocks``)."""
        self.sow(BLOCKS, name, x)
        return x

    @property
    def conv(self):
        """The convolution of this form: canonical-layout VJPs when compiled (the slow
        XLA:CPU backward never sits inside ``lax.switch``), XLA's own in the reference."""
        return nn.conv2d if self.compiled else nn.conv2d_reference


class ConvBN(SpaceModule):
    """Conv (no bias) + BN with a tapped, perturbable conv output; optional leading ReLU."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    relu: bool = True

    @linen.compact
    def __call__(self, x: Array) -> Array:
        if self.relu:
            one = jnp.ones((), jnp.int32)
            self.sow("relu", "input", (x, one, one))  # the benchmark's ReLUConvBN
            x = jax.nn.relu(x)
        kernel = nn.ConvParams(self.in_channels, self.out_channels, self.kernel_size, name="conv")()
        out = self.conv(x, kernel.astype(x.dtype), self.stride, self.kernel_size // 2)
        out = self.perturb("conv_out", out)
        self.sow("intermediates", "conv_out", out)
        scale, bias = nn.BatchNormParams(self.out_channels, name="bn")()
        return nn.batch_norm(out, scale.astype(x.dtype), bias.astype(x.dtype), self.bn)


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

    def build(self) -> tuple[tuple[Layer, ...], np.ndarray, np.ndarray]:
        """The layers, and per layer its edge (-1: always active) and activating op."""
        return tuple(self.layers), np.asarray(self.edges, np.int32), np.asarray(self.ops, np.int32)


def edge_layers_active(layer_edges: np.ndarray, layer_ops: np.ndarray):
    """``active(genotype)`` of a layer table whose layer l sits on edge ``layer_edges[l]``
    as op ``layer_ops[l]`` (edge -1: a layer every architecture uses)."""

    def active(genotype):
        genotype = jnp.asarray(genotype, jnp.int32)
        selected = genotype[np.maximum(layer_edges, 0)] == layer_ops
        return jnp.where(layer_edges < 0, True, selected)

    return active


def apply_module(module: linen.Module, variables, *inputs, capture: bool):
    """``module.apply(variables, *inputs)``, with the tap collections returned when
    ``capture``."""
    if not capture:
        return module.apply(variables, *inputs)
    return module.apply(variables, *inputs, mutable=TAP_COLLECTIONS)


def make_network(
    *,
    space: str,
    config: Any,
    module: type[SpaceModule],
    compiled: bool,
    init_genotype: Any,
    traced: Callable[[Any], Any],
    concrete: Callable[[Any], Any],
    layers: tuple[Layer, ...],
    active: Callable[[Any], Array],
    param_count: Callable[..., Any],
    flops: Callable[..., Any],
    blocks: tuple[Block, ...] = (),
    reduction_bn: bool = False,
) -> Network:
    """The :class:`Network` of a module ``module(config, ...)(images, genotype)``.

    Args:
      space: the space's name.
      config: its ``Config`` (``num_classes``, ``image_size``; passed to the counts).
      module: the network's :class:`SpaceModule` class; its first field is the config.
      compiled: the compiled-once form (the genotype is data) or the per-architecture
        reference (the genotype is Python structure, one compilation per architecture).
      init_genotype: any valid genotype, to trace the module's parameters with.
      traced: the compiled form's genotype as the module takes it (e.g. per-edge scalars).
      concrete: the reference form's: a checked genotype as Python ints.
      layers, active: the layer table and its active mask.
      param_count, flops: ``(arch, config)`` -> the analytic counts.
      blocks: the block sequence (:attr:`zcjax.network.Network.blocks`).
      reduction_bn: whether the module has a ``reduction_bn`` field (residual reduction
        blocks with their own BatchNorm mode); without one, ``apply``'s ``reduction_bn``
        concerns nothing in the network and is ignored.
    """

    def build(bn, reduction_bn_mode, isolate_blocks=False):
        settings = {"bn": bn, "compiled": compiled, "isolate_blocks": isolate_blocks}
        if reduction_bn:
            return module(config, reduction_bn=reduction_bn_mode, **settings)
        return module(config, **settings)

    def init(key, images=None, *, init_draw=initialisation.DEFAULT_INIT_DRAW):
        if images is None:
            images = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)
        module = build("batch", None)
        return {"params": initialisation.init_variables(
            lambda k: module.init(k, images, init_genotype)["params"], key, init_draw)}

    def apply(variables, genotype, images, *, bn="batch", reduction_bn=None, capture=False,
              isolate_blocks=False):
        genotype = traced(genotype) if compiled else concrete(genotype)
        return apply_module(build(bn, reduction_bn, isolate_blocks), variables, images,
                            genotype, capture=capture)

    return Network(
        space=space,
        layers=layers,
        init=init,
        apply=apply,
        active=active,
        param_count=functools.partial(param_count, config=config),
        flops=functools.partial(flops, config=config),
        num_classes=config.num_classes,
        image_size=config.image_size,
        blocks=blocks,
    )
