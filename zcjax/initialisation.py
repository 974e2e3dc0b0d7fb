"""The networks' initialisation in one random call: PyTorch's distributions, cheap to compile.

Every parameter zcjax's spaces create is, at PyTorch's default initialisation, uniform on
an interval (Conv2d/Linear kernels and Linear biases on +-1/sqrt(fan_in)) or a constant
(BatchNorm's scale 1 and bias 0, an interval of width 0). The parameter holders of
:mod:`zcjax.nn` return their value in an :class:`Interval` box that records that interval;
Flax unboxes it wherever a module reads the parameter.

:func:`init_variables` draws the parameters in one of two ways (``init_draw``):

* ``"one"`` (the default): the boxes' intervals are read from a shape-only trace of the
  module's init (``jax.eval_shape``: nothing runs), and ONE ``jax.random.uniform`` of all
  random parameters' sizes is cut into them. Same distributions, one RNG program.
* ``"per_array"``: Flax's own initialisation, one threefry draw per parameter array from a
  key folded with the parameter's path (zcjax up to and including commit 0e3c075; the
  results in bench/ were scored so). Each draw costs its own RNG program: on a 2-core CPU
  NB201's 129 arrays take ~15 s to compile, the one draw 0.2 s.

The two give different (equally distributed) weights, so a stored score records which
(:mod:`zcjax.settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.linen import meta

INIT_DRAWS = ("one", "per_array")
DEFAULT_INIT_DRAW = "one"
# What stores written before init_draw existed drew (zcjax.settings' compatibility rule).
LEGACY_INIT_DRAW = "per_array"


class Interval(struct.PyTreeNode, meta.AxisMetadata):
    """A parameter's value and the interval its initialisation is uniform on.

    ``low == high`` is a constant. Stacked copies (:func:`zcjax.nn.stacked`) share the
    interval of one copy.
    """

    value: Any
    low: float = struct.field(pytree_node=False)
    high: float = struct.field(pytree_node=False)

    def unbox(self):
        return self.value

    def replace_boxed(self, val):
        return self.replace(value=val)

    def add_axis(self, index, params):
        return self

    def remove_axis(self, index, params):
        return self


def uniform(low: float, high: float) -> Callable:
    """Flax initializer: U(low, high) per array (Flax's draw), boxed with its interval."""

    def init(key, shape, dtype=jnp.float32):
        return Interval(jax.random.uniform(key, shape, dtype, low, high), low, high)

    return init


def constant(value: float) -> Callable:
    """Flax initializer: every entry ``value``."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return Interval(jnp.full(shape, value, dtype), value, value)

    return init


def boxed(initializer: Callable, interval: Callable[[tuple[int, ...]], tuple[float, float]]):
    """An existing Flax initializer, its value boxed with ``interval(shape)``.

    For initializers whose per-array draw must stay exactly Flax's (``"per_array"``).
    """

    def init(key, shape, dtype=jnp.float32):
        return Interval(initializer(key, shape, dtype), *interval(tuple(shape)))

    return init


def check_init_draw(init_draw: str) -> str:
    if init_draw not in INIT_DRAWS:
        raise ValueError(f"init_draw must be one of {', '.join(map(repr, INIT_DRAWS))}, "
                         f"got {init_draw!r}")
    return init_draw


def _is_box(value) -> bool:
    return isinstance(value, Interval)


def init_variables(module_init: Callable, key: jax.Array, init_draw: str = DEFAULT_INIT_DRAW):
    """The unboxed parameters of ``module_init(key)`` (a Flax init returning Interval boxes).

    Args:
      module_init: ``key -> params`` whose leaves are :class:`Interval` boxes.
      key: the initialisation key.
      init_draw: ``"one"`` or ``"per_array"`` (see the module's docstring).

    Raises:
      ValueError: an unknown ``init_draw``; a parameter without an Interval box with
        ``"one"`` (its distribution is unknown).
    """
    if check_init_draw(init_draw) == "per_array":
        return meta.unbox(module_init(key))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(
        jax.eval_shape(module_init, key), is_leaf=_is_box)
    for path, box in leaves:
        if not _is_box(box):
            raise ValueError(f"parameter {jax.tree_util.keystr(path)} has no Interval box "
                             "(zcjax.initialisation): its distribution is unknown, so it "
                             "cannot be drawn with init_draw='one'")
    boxes = [box for _, box in leaves]
    sizes = [int(np.prod(box.value.shape)) if box.high > box.low else 0 for box in boxes]
    draws = jax.random.uniform(key, (sum(sizes),), jnp.float32)
    offsets = np.cumsum([0] + sizes)
    values = []
    for box, start, stop in zip(boxes, offsets, offsets[1:]):
        shape, dtype = box.value.shape, box.value.dtype
        if box.high > box.low:
            # jax.random.uniform's own scaling, on this array's slice of the one draw.
            low = jnp.asarray(box.low, jnp.float32)
            values.append(jnp.maximum(low, draws[start:stop] * (box.high - box.low) + low)
                          .reshape(shape).astype(dtype))
        else:
            values.append(jnp.full(shape, box.low, dtype))
    return jax.tree.unflatten(treedef, values)
