"""Where proxies meet search spaces: ``score`` for notebooks, ``make_scorer`` for bulk work.

The dtype policy: networks run in float32; synflow, the correlation matrices and the
log-determinants compute in float64, the ``wide`` float every :class:`ProxyInputs` carries.
JAX offers float64 only in x64, so the scorers enter it themselves, in scope
(:func:`in_x64`), and JAX's global configuration is never changed.

The pieces a scorer is made of are public, for callers that build their own program
around them (bench/strategies.py, the parity suites): :func:`init_key` and
:func:`noise_key` split the user's key into the initialisation's stream and the
proxies' own, and :func:`proxy_outputs` runs the proxies on initialised variables.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zcjax import data, initialisation
from zcjax.network import Network
from zcjax.proxies import registry
from zcjax.proxies.base import ProxyInputs, ProxyOutput
from zcjax.space import SearchSpace, get_space

_INIT_STREAM, _NOISE_STREAM = 0, 1  # fold_in streams of the user's key


def init_key(key: jax.Array) -> jax.Array:
    """The key of the network's initialisation, derived from the user's key."""
    return jax.random.fold_in(key, _INIT_STREAM)


def noise_key(key: jax.Array) -> jax.Array:
    """The key of the proxies' own random draws (``ProxyInputs.key``), derived from the
    user's key independently of :func:`init_key`."""
    return jax.random.fold_in(key, _NOISE_STREAM)


def in_x64(fn: Callable) -> Callable:
    """``fn`` run inside ``jax.enable_x64(True)`` (the scope ends when it returns).

    For callers of :attr:`Scorer.compiled` or of a transformation of it (``jax.vmap``,
    :func:`zcjax.grouped.grouped_vmap`): their float64 computations need it.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapped


def proxy_outputs(network: Network, proxies: Iterable[registry.Proxy],
                  variables: Mapping[str, Any], genotype, images, labels, key: jax.Array,
                  options: Mapping[str, Any]) -> Mapping[str, ProxyOutput]:
    """Every proxy on one architecture with given variables: the scorer's computation
    after the initialisation (pure; jit it, inside x64).

    Args:
      network: the space's network (compiled-once or reference).
      proxies: resolved proxies (:func:`zcjax.proxies.resolve`).
      variables: ``network.init(init_key(key), images[:1], init_draw=...)`` for the
        scorer's numbers.
      genotype: the architecture, as the network takes it.
      images: (N, H, W, C) float32.
      labels: (N,) int.
      key: the user's key; the proxies draw from :func:`noise_key` of it.
      options: :func:`zcjax.proxies.validate_options` of the proxies and the user's options.

    Returns:
      ``{proxy name: ProxyOutput}`` in the order of ``proxies``.
    """
    inputs = ProxyInputs(network, variables, genotype, images, labels, noise_key(key), options,
                         wide=jnp.float64)
    return registry.run(proxies, inputs)


@dataclasses.dataclass(frozen=True)
class Scorer:
    """A compiled scorer: ``scorer(genotype, batch, key) -> {proxy: NumPy scalar}``.

    Attributes:
      network: the space's compiled-once network.
      proxies: the proxy names, in order.
      space: the :class:`~zcjax.space.SearchSpace` (codec: ``encode``, ``decode``,
        ``check_arch``).
      compiled: the jitted ``(genotype, images, labels, key) -> outputs`` itself, to
        transform (``jax.vmap``, grouping): no input checks, and it must run in x64, so
        call it (or what it is transformed into) through :func:`in_x64`. Its cache holds
        one entry per (batch shape, dtype): genotypes are data, not structure.
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

    @property
    def unchecked(self) -> Callable | None:
        """``compiled`` run in x64: ``unchecked(genotype, images, labels, key) -> outputs``
        with no input checks, jax arrays out (None where ``compiled`` is None)."""
        return None if self.compiled is None else in_x64(self.compiled)

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
        key = jax.random.key(0) if key is None else checked_key(key)
        outputs = self.unchecked(jnp.asarray(genotype, jnp.int32), images.astype(jnp.float32),
                                 labels, key)
        # NumPy, so float64 results stay float64 outside the x64 scope.
        return jax.device_get(outputs)


def checked_key(key) -> jax.Array:
    """A typed ``jax.random.key``; a legacy raw ``uint32[2]`` key is wrapped.

    Raises:
      TypeError: anything else (an int seed, say: pass ``jax.random.key(seed)``).
    """
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise TypeError(f"key must be one jax.random key, got a key array of shape "
                            f"{key.shape}")
        return key
    if (isinstance(key, (jax.Array, np.ndarray)) and key.shape == (2,)
            and key.dtype == np.uint32):
        return jax.random.wrap_key_data(key)
    raise TypeError(f"key must be a jax.random.key(seed), got {type(key).__name__} "
                    f"{key!r:.40}")


def make_scorer(
    space: str | SearchSpace = "nb201",
    proxies: str | Iterable[str] | None = None,
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    config: Any = None,
    per_layer: bool = False,
    init_draw: str = initialisation.DEFAULT_INIT_DRAW,
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
      init_draw: how the PyTorch-default weights are drawn: ``"one"`` random call for the
        whole network (compiles in well under a second) or ``"per_array"`` (Flax's draw
        per parameter array, ~15 s of compilation on a 2-core CPU: what zcjax drew up to
        commit 0e3c075); same distributions, different weights
        (:mod:`zcjax.initialisation`).
      **options: options the requested proxies read, e.g. ``activation_bn="batch"``
        for naswot (:func:`zcjax.proxies.options_read` lists a proxy's); validated once.

    Returns:
      A :class:`Scorer`.

    Raises:
      TypeError: an option none of the requested proxies reads.
      ValueError: an option value the option does not accept; an unknown ``init_draw``.
    """
    space = get_space(space)
    initialisation.check_init_draw(init_draw)
    config = space.Config() if config is None else config
    if num_classes is not None:
        config = dataclasses.replace(config, num_classes=int(num_classes))
    if image_size is not None:
        config = dataclasses.replace(config, image_size=int(image_size))
    resolved = registry.resolve(proxies)
    names = tuple(p.name for p in resolved)
    validated = registry.validate_options(resolved, options)

    def build(network: Network) -> Scorer:
        def score_architecture(genotype, images, labels, key):
            variables = network.init(init_key(key), images[:1], init_draw=init_draw)
            outputs = proxy_outputs(network, resolved, variables, genotype, images, labels, key,
                                    validated)
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
    compiled scorer, so scoring many architectures in a notebook compiles once. That first
    call is the expensive one. On a 2-core CPU, NB201's eleven classic proxies take about
    a minute (12 s tracing, 3 s lowering, 43 s XLA compilation) before the first score,
    then ~4.5 s per architecture at batch 64; a single proxy compiles in 1-50 s. The
    persistent compilation cache saves the XLA part across sessions (tracing is redone):
    ``zcjax.cache.use_compilation_cache(zcjax.cache.default_cache_dir())`` first.

    Args:
      genotype: an arch string (``"|nor_conv_3x3~0|+|...|"``) or the space's int genotype.
      batch: ``(images, labels)``: images float NHWC (normalised), labels int.
      proxies: names (sequence or comma-separated); None = every registered proxy.
      key: PRNG key of the random initialisation; default ``jax.random.key(0)``.
      space: search space name or a SearchSpace.
      num_classes: classifier width; default the space's (10 for NB201). The image size is
        taken from the batch.
      **options: options the requested proxies read (see :func:`make_scorer`).

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
