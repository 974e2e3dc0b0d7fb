"""Where proxies meet search spaces: ``score`` for notebooks, ``make_scorer`` for bulk work.

x64 is enabled only inside zcjax's own scoring calls (``jax.enable_x64`` as a context),
because synflow, the correlation matrices and the log-determinants need float64; the
networks themselves run in float32 and JAX's global configuration is never changed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zcjax import data
from zcjax.network import Network
from zcjax.proxies import registry
from zcjax.proxies.base import Options, ProxyInputs, ProxyOutput
from zcjax.space import SearchSpace, get_space

_INIT_STREAM, _NOISE_STREAM = 0, 1  # fold_in streams of the user's key


def _options(**options: Any) -> Options:
    valid = {field.name for field in dataclasses.fields(Options)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; valid options: "
                        f"{', '.join(sorted(valid))}")
    return Options(**options)


@dataclasses.dataclass(frozen=True)
class Scorer:
    """A compiled scorer: ``scorer(genotype, batch, key) -> {proxy: NumPy scalar}``.

    Attributes:
      network: the space's compiled-once network.
      proxies: the proxy names, in order.
      space: the :class:`~zcjax.space.SearchSpace` (codec: ``encode``, ``decode``,
        ``check_arch``).
      compiled: the jitted ``(genotype, images, labels, key) -> outputs`` itself (no input
        checks; must be called inside ``jax.enable_x64(True)``). Its cache holds one entry
        per (batch shape, dtype): genotypes are data, not structure.
      for_genotype: for spaces whose shapes vary between architectures (those that offer
        ``signature(genotype, config)``, e.g. NB101): ``genotype -> Scorer`` of its shape
        signature (built once per signature and cached); ``network`` and ``compiled`` are
        then None and calls dispatch through it.
    """

    network: Network | None
    proxies: tuple[str, ...]
    space: SearchSpace
    compiled: Any
    for_genotype: Callable[[np.ndarray], Scorer] | None = None

    def __call__(self, genotype, batch, key: jax.Array | None = None):
        """Score one architecture.

        Args:
          genotype: the space's int genotype (e.g. ``zcjax.spaces.nb201.encode(arch)``).
          batch: ``(images NHWC float, labels int)``.
          key: PRNG key for the initialisation (and any proxy noise); default key 0.
        """
        if isinstance(genotype, str):
            raise TypeError("make_scorer's scorer takes an int genotype; encode the arch "
                            f"string first (scorer.space.encode, space {self.space.name!r}) or "
                            "use zcjax.score")
        genotype = self.space.check_arch(genotype)
        if self.for_genotype is not None:
            return self.for_genotype(genotype)(genotype, batch, key)
        images, labels = data.validate_batch(batch, image_size=self.network.image_size,
                                             num_classes=self.network.num_classes)
        key = jax.random.key(0) if key is None else key
        with jax.enable_x64(True):
            outputs = self.compiled(jnp.asarray(genotype, jnp.int32), images.astype(jnp.float32),
                                    labels, key)
        # NumPy, so float64 results stay float64 outside the x64 scope.
        return jax.device_get(outputs)


def make_scorer(
    space: str | SearchSpace = "nb201",
    proxies: str | Iterable[str] | None = None,
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    config: Any = None,
    per_layer: bool = False,
    **options: Any,
) -> Scorer:
    """Build the compiled scorer of a proxy set on a space (compiled once per batch shape).

    Args:
      space: search space name (see :func:`zcjax.space.space_names`) or a SearchSpace.
      proxies: proxy names (sequence or comma-separated); None = every registered proxy.
      num_classes: classifier width; default: the space config's (10 for NB201, CIFAR-10).
      image_size: input height and width (the networks are fully convolutional; this sets
        what batches are accepted and what FLOPs count); default: the config's (32).
      config: the space's ``Config`` (smaller networks for tests); default: the benchmark's.
      per_layer: return each proxy's :class:`~zcjax.proxies.ProxyOutput` (score, per-layer
        values aligned with ``scorer.network.layers``, active mask) instead of the score.
      **options: fields of :class:`zcjax.proxies.Options`.

    Returns:
      A :class:`Scorer`.
    """
    space = get_space(space)
    config = space.Config() if config is None else config
    if num_classes is not None:
        config = dataclasses.replace(config, num_classes=int(num_classes))
    if image_size is not None:
        config = dataclasses.replace(config, image_size=int(image_size))
    resolved = registry.resolve(proxies)
    names = tuple(p.name for p in resolved)
    static = _options(**options)

    def build(network: Network) -> Scorer:
        def score_architecture(genotype, images, labels, key):
            variables = network.init(jax.random.fold_in(key, _INIT_STREAM), images[:1])
            inputs = ProxyInputs(network, variables, genotype, images, labels,
                                 jax.random.fold_in(key, _NOISE_STREAM), static)
            outputs: Mapping[str, ProxyOutput] = registry.run(resolved, inputs)
            if per_layer:
                return dict(outputs)
            return {name: output.score for name, output in outputs.items()}

        return Scorer(network, names, space, jax.jit(score_architecture))

    if not space.offers("signature"):
        return build(space.network(config))
    # Shapes vary between architectures (NB101): one compiled scorer per shape signature.
    per_signature = functools.lru_cache(maxsize=None)(
        lambda signature: build(space.network(config, signature)))
    return Scorer(None, names, space, None,
                  lambda genotype: per_signature(space.signature(genotype, config)))


@functools.lru_cache(maxsize=32)
def _cached_scorer(space, proxies, num_classes, image_size, options) -> Scorer:
    return make_scorer(space, proxies, num_classes=num_classes, image_size=image_size,
                       **dict(options))


def score(
    genotype,
    batch,
    *,
    proxies: str | Iterable[str] | None = None,
    key: jax.Array | None = None,
    space: str | SearchSpace = "nb201",
    num_classes: int | None = None,
    **options: Any,
) -> dict[str, float]:
    """Score one architecture on one minibatch with zero-cost proxies.

    Repeated calls with the same space, proxies, class count and options reuse one
    compiled scorer, so scoring many architectures in a notebook compiles once.

    Args:
      genotype: an arch string (``"|nor_conv_3x3~0|+|...|"``) or the space's int genotype.
      batch: ``(images, labels)``: images float NHWC (normalised), labels int.
      proxies: names (sequence or comma-separated); None = every registered proxy.
      key: PRNG key of the random initialisation; default ``jax.random.key(0)``.
      space: search space name or a SearchSpace.
      num_classes: classifier width; default the space's (10 for NB201). The image size is
        taken from the batch.
      **options: fields of :class:`zcjax.proxies.Options`.

    Returns:
      ``{proxy name: score}`` as Python floats (non-finite values are kept).

    Example:
      >>> batch = zcjax.data.sample_batch("cifar10", 64)
      >>> zcjax.score("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|"
      ...             "avg_pool_3x3~2|", batch, proxies=("snip", "naswot"))
    """
    names = tuple(p.name for p in registry.resolve(proxies))
    genotype = get_space(space).check_arch(genotype)
    image_size = data.validate_batch(batch)[0].shape[1]
    scorer = _cached_scorer(space, names, num_classes, image_size, tuple(sorted(options.items())))
    scores = scorer(genotype, batch, key)
    return {name: float(scores[name]) for name in names}
