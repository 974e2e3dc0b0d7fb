"""Re-drawn weights for the proxies whose authors score under their own initialisation.

Zen re-draws every kernel from N(0, 1); AZ-NAS and VKDNW from Kaiming-normal with fan-in
scaling and the ReLU gain (``torch.nn.init.kaiming_normal_(w, mode="fan_in",
nonlinearity="relu")``: std = sqrt(2 / fan_in)). Both set every BatchNorm scale to 1 and
every bias (BatchNorm and Linear) to 0. The draws come from the proxies' key, so the
scorer's own initialisation is left alone for the proxies that read it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zcjax.proxies.options import Option

Array = jax.Array

SOTA_INIT = Option(
    "sota_init", "kaiming_normal", choices=("kaiming_normal", "scorer"),
    doc='the weights AZ-NAS and VKDNW score: ``"kaiming_normal"`` (default) re-draws every '
        'kernel Kaiming-normal (fan-in, ReLU gain) with BatchNorm scale 1 and biases 0, as '
        "both authors' code does; ``\"scorer\"`` keeps the scorer's PyTorch-default "
        'initialisation, shared with the other proxies.')


def unit_std(fan_in: int) -> float:
    return 1.0


def kaiming_std(fan_in: int) -> float:
    """Kaiming-normal fan-in std with the ReLU gain sqrt(2)."""
    return float(np.sqrt(2.0 / fan_in))


def kernel_fan_ins(network) -> dict[tuple[str, ...], int]:
    """{param path: fan-in} of every kernel in the network's layer table (layers stacked
    in one array share its path and their fan-in)."""
    return {layer.param_path: layer.fan_in for layer in network.layers}


def redrawn_variables(params: Mapping[str, Any], key: Array, std: Callable[[int], float],
                      fan_ins: Mapping[tuple[str, ...], int]) -> dict[str, Any]:
    """NEW variables: kernels ~ N(0, std(fan_in)^2), BN scale 1, every bias 0.

    Kernel i is ``std * normal(split(key, leaves)[i])``; ``fan_ins`` maps each kernel's
    path to its fan-in (:func:`kernel_fan_ins`). Kernels of one shape are drawn in one
    vmapped call: the same values as a call per kernel, one RNG program per shape instead
    of per kernel (XLA:CPU compiles each threefry for seconds).

    Raises:
      KeyError: a kernel that is not in ``fan_ins`` (a space whose layer table misses it).
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    values = [jnp.ones_like(leaf) if path[-1].key == "scale" else jnp.zeros_like(leaf)
              for path, leaf in leaves]
    kernels = defaultdict(list)  # (shape, dtype, std) -> leaf positions
    for position, (path, leaf) in enumerate(leaves):
        if path[-1].key == "kernel":
            names = tuple(entry.key for entry in path)
            if names not in fan_ins:
                raise KeyError(f"kernel {'/'.join(names)} is not in the layer table")
            kernels[leaf.shape, leaf.dtype, std(fan_ins[names])].append(position)
    for (shape, dtype, scale), positions in kernels.items():
        draws = jax.vmap(lambda k: jax.random.normal(k, shape, dtype))(keys[np.asarray(positions)])
        for row, position in enumerate(positions):
            values[position] = draws[row] if scale == 1.0 else draws[row] * scale
    return {"params": jax.tree_util.tree_unflatten(treedef, values)}


def sota_variables(inputs, key: Array) -> Mapping[str, Any]:
    """The variables AZ-NAS and VKDNW score (``sota_init``)."""
    if inputs.options["sota_init"] == "scorer":
        return inputs.variables
    return redrawn_variables(inputs.params, key, kaiming_std, kernel_fan_ins(inputs.network))
