"""The search-space contract, and the registry that maps space names to spaces.

A search space is one :class:`SearchSpace` object that declares everything it offers:
the required members every space has, and optional capabilities that are either a
function or None. Nothing in zcjax probes a space with ``hasattr``; code that needs a
capability asks for it with :meth:`SearchSpace.require`, which names the space and the
capability when it is missing, or checks :meth:`SearchSpace.offers`.

Adding a space:

1. Write one module (``spaces/<name>.py`` for a built-in one, any module or a notebook
   cell for your own) with a frozen dataclass ``Config`` (the network shape, with at
   least ``num_classes`` and ``image_size`` fields; every field defaulted, the default
   being the benchmark's network), the codec (``encode``, ``decode``, ``check_arch``,
   ``arch_strings``), ``sample(key, n, *, replace=False)``, the analytic
   ``param_count(arch, config)`` and ``flops(arch, config)`` (traceable on a traced
   genotype), and ``network(config)`` / ``reference_network(config)`` returning a
   :class:`zcjax.network.Network`: the compiled-once network (the genotype is data) and
   the plain per-architecture module it is tested against. NB201-style cells get the
   shared pieces from ``zcjax.spaces._cell`` (codec, layer table, network factory).
2. End the module with ``SPACE = SearchSpace(name=..., Config=Config, encode=encode,
   ...)``, passing every optional capability the space has (see :class:`SearchSpace`).
3. Register it: built-in spaces are listed in ``_BUILTIN`` below by import path
   (imported on first use); your own with ``zcjax.register_space(SPACE)`` (or the
   module). ``zcjax.get_space(name)``, ``make_scorer(name, ...)``, ``zcjax score-space
   name`` and the CLI then know it.
4. Add one fixture entry for it in ``tests/test_space_conformance.py`` (a small config
   and batch): the conformance suite then holds it to the same checks as every other
   space. Checks against outside sources (the benchmark's parameter counts, its keys)
   go in a ``tests/test_<name>.py`` of its own.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Hashable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from zcjax.network import Network

# Optional capabilities: field name -> what offering it means (for error messages).
CAPABILITIES = {
    "all_genotypes": "enumerate every architecture",
    "signature": "shape signatures of architectures whose network shapes differ",
    "edge_ops": "per-edge genotypes for the grouped vmap",
    "mutate": "mutate a genotype (search)",
    "from_naslib": "read NASLib / NAS-Bench-Suite-Zero keys",
    "to_naslib": "write NASLib keys",
}
# Fields that must be callable (the required functions).
_REQUIRED_FUNCTIONS = ("encode", "decode", "check_arch", "arch_strings", "sample", "network",
                       "reference_network", "param_count", "flops")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """One search space: its required members and its declared optional capabilities.

    Attribute names equal the module function names of the built-in spaces, so
    ``space.encode(arch)`` or ``space.Config()`` read as they did on a module.

    Attributes:
      name: the registry name (``"nb201"``); also ``Network.space``.
      Config: a frozen dataclass type of the network shape with ``num_classes`` and
        ``image_size`` fields; ``Config()`` is the benchmark's network.
      encode: arch string -> int32 genotype; ValueError naming the malformed part.
      decode: genotype -> canonical arch string (``decode(encode(s)) == s``).
      check_arch: any arch form the space accepts (string, genotype, ...) -> validated
        int32 genotype; one clear ValueError otherwise.
      arch_strings: many genotypes -> their canonical strings.
      sample: ``sample(key, n, *, replace=False)`` -> ``(n, *genotype shape)`` int32.
      network: ``network(config)`` -> the compiled-once :class:`~zcjax.network.Network`
        (``network(config, signature)`` for spaces that declare ``signature``).
      reference_network: the same arguments -> the per-architecture reference network
        (Python control flow; the tests' oracle).
      param_count: ``param_count(arch, config)`` -> parameters of the active network.
      flops: ``flops(arch, config)`` -> FLOPs of one image through the active network.
      num_archs: how many architectures the space has (None: unknown).
      all_genotypes: optional ``() -> (num_archs, ...)`` int32, every genotype.
      signature: optional ``(arch, config) -> hashable``: what fixes the network's
        shapes when they differ between architectures (NB101); ``network`` then takes
        it as its second argument and a scorer compiles once per signature.
      edge_ops: optional ``genotype -> tuple of per-edge int32 scalars``: declares that
        a genotype is one op index per edge with every combination valid (``num_archs
        = ops ** edges``) and that the compiled network accepts that tuple (the grouped
        vmap, :mod:`zcjax.grouped`).
      mutate: optional ``(genotype, rng) -> genotype``: a different valid genotype one
        small change away (the space's usual mutation, e.g. NASLib's), drawn with the
        ``numpy.random.Generator`` ``rng`` (host-side: a search draws thousands, and one
        generator per search keeps them reproducible; :mod:`zcjax.search`).
      from_naslib: optional NASLib / NAS-Bench-Suite-Zero JSON key -> genotype.
      to_naslib: optional genotype -> that key (``from_naslib``'s inverse).
      naslib_name: NASLib's name of the space, the ``<name>`` of its Suite-Zero file
        ``zc_<name>.json`` (``"nasbench201"``), or None; lets
        :func:`zcjax.benchmarks.load_benchmark` tell a file's space from its name.
    """

    name: str
    Config: type
    encode: Callable[[str], np.ndarray]
    decode: Callable[[Any], str]
    check_arch: Callable[[Any], np.ndarray]
    arch_strings: Callable[[Sequence], list[str]]
    sample: Callable[..., np.ndarray]
    network: Callable[..., Network]
    reference_network: Callable[..., Network]
    param_count: Callable[..., Any]
    flops: Callable[..., Any]
    num_archs: int | None
    all_genotypes: Callable[[], np.ndarray] | None = None
    signature: Callable[[Any, Any], Hashable] | None = None
    edge_ops: Callable[[Any], tuple] | None = None
    mutate: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    from_naslib: Callable[[Any], np.ndarray] | None = None
    to_naslib: Callable[[np.ndarray], str] | None = None
    naslib_name: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a SearchSpace name is a non-empty string, got {self.name!r}")
        if not (isinstance(self.Config, type) and dataclasses.is_dataclass(self.Config)):
            raise TypeError(f"space {self.name!r}: Config must be a dataclass type, got "
                            f"{self.Config!r}")
        missing = {"num_classes", "image_size"} - {f.name for f in dataclasses.fields(self.Config)}
        if missing:
            raise TypeError(f"space {self.name!r}: Config {self.Config.__name__} lacks the "
                            f"field(s) {', '.join(sorted(missing))}")
        for field in _REQUIRED_FUNCTIONS:
            if not callable(getattr(self, field)):
                raise TypeError(f"space {self.name!r}: {field} must be a function, got "
                                f"{getattr(self, field)!r}")
        for field in CAPABILITIES:
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise TypeError(f"space {self.name!r}: capability {field} must be a function "
                                f"or None, got {value!r}")
        if self.num_archs is not None and (not isinstance(self.num_archs, int)
                                           or self.num_archs < 1):
            raise TypeError(f"space {self.name!r}: num_archs must be a positive int or None, "
                            f"got {self.num_archs!r}")

    def offers(self, capability: str) -> bool:
        """Whether the space declares ``capability`` (a key of :data:`CAPABILITIES`)."""
        return self._declared(capability) is not None

    def require(self, capability: str) -> Callable:
        """The function of ``capability``.

        Raises:
          ValueError: the space does not offer it (naming the space, the capability and
            what the space does offer), or ``capability`` is no capability at all.
        """
        function = self._declared(capability)
        if function is None:
            offered = [name for name in CAPABILITIES if self._declared(name) is not None]
            raise ValueError(f"space {self.name!r} does not offer {capability} "
                             f"({CAPABILITIES[capability]}); it offers: "
                             f"{', '.join(offered) or 'no optional capability'}")
        return function

    def _declared(self, capability: str) -> Callable | None:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown space capability {capability!r}; capabilities: "
                             f"{', '.join(CAPABILITIES)}")
        return getattr(self, capability)


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------
# Built-in spaces by import path: importing one costs a JAX/Flax module import, so they
# are imported when first asked for.
_BUILTIN = {
    "nb201": "zcjax.spaces.nb201",
    "nb101": "zcjax.spaces.nb101",
    "tnb101_micro": "zcjax.spaces.tnb101_micro",
    "darts": "zcjax.spaces.darts",
}
_REGISTERED: dict[str, SearchSpace] = {}


def _space_of_module(module: ModuleType) -> SearchSpace:
    space = vars(module).get("SPACE")
    if not isinstance(space, SearchSpace):
        raise TypeError(f"module {module.__name__} must end with SPACE = SearchSpace(...), "
                        f"got SPACE = {space!r}")
    return space


def register_space(space_or_module: SearchSpace | ModuleType, *,
                   replace: bool = False) -> SearchSpace:
    """Make a space known by its name to :func:`get_space`, ``make_scorer`` and the CLI.

    Args:
      space_or_module: a :class:`SearchSpace`, or a module that defines ``SPACE``.
      replace: allow replacing a space already registered under that name (a built-in
        one included).

    Returns:
      The registered space.

    Raises:
      TypeError: neither a SearchSpace nor a module with one.
      ValueError: another space has that name and ``replace`` is False.
    """
    if isinstance(space_or_module, ModuleType):
        space = _space_of_module(space_or_module)
    elif isinstance(space_or_module, SearchSpace):
        space = space_or_module
    else:
        raise TypeError(f"register_space takes a SearchSpace or a module defining SPACE, got "
                        f"{type(space_or_module).__name__}")
    taken = space.name in _REGISTERED or space.name in _BUILTIN
    if taken and not replace and _REGISTERED.get(space.name) is not space:
        raise ValueError(f"a search space named {space.name!r} is already registered; pass "
                         "replace=True to replace it")
    _REGISTERED[space.name] = space
    return space


def get_space(space: str | SearchSpace) -> SearchSpace:
    """A registered space by name (e.g. ``"nb201"``); a SearchSpace is returned as is.

    Raises:
      ValueError: an unknown name (the message lists the valid ones).
      TypeError: neither a name nor a SearchSpace.
    """
    if isinstance(space, SearchSpace):
        return space
    if not isinstance(space, str):
        raise TypeError(f"a search space is a name or a SearchSpace, got {type(space).__name__}")
    if space not in _REGISTERED:
        if space not in _BUILTIN:
            raise ValueError(f"unknown search space {space!r}; valid spaces: "
                             f"{', '.join(space_names())}")
        found = _space_of_module(importlib.import_module(_BUILTIN[space]))
        if found.name != space:
            raise TypeError(f"module {_BUILTIN[space]} declares space {found.name!r}, "
                            f"registered as {space!r}")
        _REGISTERED[space] = found
    return _REGISTERED[space]


def space_names() -> tuple[str, ...]:
    """Every registered space's name: the built-in ones first, then users' in order."""
    return tuple(_BUILTIN) + tuple(name for name in _REGISTERED if name not in _BUILTIN)
