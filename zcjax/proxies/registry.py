"""Proxy names -> pure functions, the passes they share, and the options they read.

The registry is an explicit table (no registration by import side effects). Users add
their own passes with :func:`register_pass` and proxies with :func:`register`; both check
the pass graph (every pass known, dependencies declared with ``requires=``, no cycle) when
they are registered, so a scorer never fails half-way through tracing. :func:`run` orders
the passes its proxies need topologically, dependencies first.

Options belong to the passes and proxies that read them (:class:`~zcjax.proxies.options.
Option`): :func:`options_read` lists a proxy's, :func:`validate_options` checks what a user
passes against the requested proxies once per scorer, and :func:`proxy_settings` picks one
proxy's values (what a results store records with its rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from zcjax.aggregate import SNR_MODES
from zcjax.proxies import (az_nas, counts, epe_nas, gradient, jacob_cov, meco, naswot, snr, synflow,
                           swap, tenas, vkdnw, zen_zico)
from zcjax.proxies.base import Pass, ProxyFn, ProxyInputs, ProxyOutput
from zcjax.proxies.options import Option
from zcjax.proxies.passes import PASSES


@dataclasses.dataclass(frozen=True)
class Proxy:
    """A registered proxy.

    Attributes:
      name: the name users request it by.
      fn: ``fn(inputs, passes) -> ProxyOutput``; ``passes`` holds the results of the passes
        below and of everything they require.
      passes: the passes it reads (their dependencies are pulled in through ``requires``).
      description: one line for listings.
      options: the options the proxy itself reads (those of its passes come with them).
    """

    name: str
    fn: ProxyFn
    passes: tuple[str, ...]
    description: str
    options: tuple[Option, ...] = ()

    def __post_init__(self):
        if isinstance(self.passes, str):
            raise TypeError(f"proxy {self.name!r}: passes must be a tuple of pass names, "
                            f"got the string {self.passes!r}")
        object.__setattr__(self, "passes", tuple(self.passes))
        object.__setattr__(self, "options", tuple(self.options))


_PASSES: dict[str, Pass] = {}
_REGISTRY: dict[str, Proxy] = {}


def _pass_order(names: Iterable[str], passes: Mapping[str, Pass], reader: str) -> tuple[str, ...]:
    """``names`` and every pass they require, dependencies first, otherwise in the order
    given (depth first: a pass's requirements come right before it when not earlier)."""
    order: dict[str, None] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            cycle = " -> ".join(chain[chain.index(name):] + (name,))
            raise ValueError(f"{reader}: passes {cycle} require each other (a cycle)")
        if name not in passes:
            via = f" (required by {' -> '.join(chain)})" if chain else ""
            raise ValueError(f"{reader} needs unknown pass {name!r}{via}; known passes: "
                             f"{', '.join(passes)}")
        for required in passes[name].requires:
            visit(required, chain + (name,))
        order[name] = None

    for name in names:
        visit(name, ())
    return tuple(order)


def _options_of(proxy: Proxy, passes: Mapping[str, Pass]) -> tuple[Option, ...]:
    """The proxy's own options and those of every pass it needs, sorted by name.

    Raises:
      ValueError: two different declarations of one option name.
    """
    declared = list(proxy.options)
    for name in _pass_order(proxy.passes, passes, f"proxy {proxy.name!r}"):
        declared += passes[name].options
    return tuple(sorted(_merge(declared, f"proxy {proxy.name!r}").values(),
                        key=lambda option: option.name))


def _merge(options: Iterable[Option], reader: str) -> dict[str, Option]:
    """{name: option}; one name declared twice must be declared the same way."""
    merged: dict[str, Option] = {}
    for option in options:
        if not isinstance(option, Option):
            raise TypeError(f"{reader}: options must be Option declarations, got {option!r}")
        known = merged.setdefault(option.name, option)
        if known != option:
            raise ValueError(f"{reader}: option {option.name!r} is declared twice, "
                             f"differently: {known} and {option}")
    return merged


def _check_consistent(passes: Mapping[str, Pass], proxies: Mapping[str, Proxy],
                      reader: str) -> None:
    """Every option name means one thing across all passes and proxies."""
    _merge([option for spec in passes.values() for option in spec.options]
           + [option for proxy in proxies.values() for option in proxy.options], reader)


def register_pass(spec: Pass) -> None:
    """Add a shared pass under a new name; what it ``requires`` must be registered first.

    Raises:
      TypeError: not a :class:`~zcjax.proxies.base.Pass`.
      ValueError: the name is taken, a required pass is unknown (or is the pass itself),
        or one of its options is declared differently elsewhere.
    """
    if not isinstance(spec, Pass):
        raise TypeError(f"register_pass takes a zcjax.proxies.Pass, got {type(spec).__name__}")
    if spec.name in _PASSES:
        raise ValueError(f"a pass named {spec.name!r} is already registered")
    passes = {**_PASSES, spec.name: spec}
    _pass_order([spec.name], passes, f"pass {spec.name!r}")
    _check_consistent(passes, _REGISTRY, f"pass {spec.name!r}")
    _PASSES[spec.name] = spec


def register(proxy: Proxy) -> None:
    """Add a proxy under a new name.

    Its pass graph must be complete: every pass it names, and every pass those require,
    registered (:func:`register_pass`), with no cycle. A pass it names pulls in what that
    pass requires, so a proxy lists only the passes it reads.

    Raises:
      TypeError: not a :class:`Proxy`.
      ValueError: the name is taken, the pass graph is incomplete or cyclic, or one of its
        options is declared differently elsewhere.
    """
    if not isinstance(proxy, Proxy):
        raise TypeError(f"register takes a zcjax.proxies.Proxy, got {type(proxy).__name__}")
    if proxy.name in _REGISTRY:
        raise ValueError(f"a proxy named {proxy.name!r} is already registered")
    _options_of(proxy, _PASSES)  # the pass graph and the proxy's own options
    _check_consistent(_PASSES, {**_REGISTRY, proxy.name: proxy}, f"proxy {proxy.name!r}")
    _REGISTRY[proxy.name] = proxy


for _spec in (*PASSES.values(), az_nas.FEATURES_PASS, meco.TERMS_PASS):
    register_pass(_spec)
_BUILTIN_PASSES = frozenset(_PASSES)


for _builtin in (
    Proxy("grad_norm", gradient.grad_norm, ("loss_gradients",),
          "sum over layers of ||dL/dW||"),
    Proxy("snip", gradient.snip, ("loss_gradients",), "sum |W * dL/dW|"),
    Proxy("grasp", gradient.grasp, ("loss_gradients", "grasp_hessian_gradients"),
          "sum -W * (H dL/dW)"),
    Proxy("fisher", gradient.fisher, ("loss_gradients",),
          "channel-wise Fisher information of layer outputs"),
    Proxy("synflow", synflow.synflow, ("synflow_gradients",),
          "sum |W * dR/dW|, R = sum of logits for |W| on ones, float64"),
    Proxy("jacob_cov", jacob_cov.jacob_cov, ("input_gradients",),
          "eigenvalues of the correlation of input Jacobians"),
    Proxy("plain", gradient.plain, ("loss_gradients",), "sum W * dL/dW"),
    Proxy("l2_norm", gradient.l2_norm, (), "sum over layers of ||W||"),
    Proxy("params", counts.params, (), "parameters of the active network (millions)"),
    Proxy("flops", counts.flops, (), "FLOPs of the active network (millions)"),
    Proxy("naswot", naswot.naswot, ("activations",),
          "log|det| of the ReLU binary-code kernel", options=(naswot.WRAPPER_HOOKS,)),
    Proxy("nwot", naswot.nwot, ("activations",),
          "log|det| of the Conv/Linear-output binary-code kernel"),
    Proxy("lnwot", naswot.lnwot, ("activations",),
          "sum over layers of log|det| of each layer's binary-code kernel"),
    Proxy("zen", zen_zico.zen, (), "Zen-score of the Gaussian re-initialised network"),
    Proxy("zico", zen_zico.zico, ("zico_gradients",),
          "sum over layers of log sum mean|g|/std(g) over two half-batches"),
    Proxy("epe_nas", epe_nas.epe_nas, ("input_gradients",),
          "per-class log correlations of the input Jacobians"),
    Proxy("ntk", tenas.ntk, ("tenas_images", "ntk_gram"),
          "minus the condition number of the empirical NTK (TE-NAS)"),
    Proxy("linear_regions", tenas.linear_regions, ("tenas_images", "tenas_activations"),
          "number of distinct ReLU activation patterns in the batch (TE-NAS)"),
    Proxy("az_expressivity", az_nas.az_expressivity, ("az_features",),
          "AZ-NAS: sum over block feature maps of their covariance spectrum's entropy"),
    Proxy("az_progressivity", az_nas.az_progressivity, ("az_features",),
          "AZ-NAS: the smallest expressivity increase from one block to the next"),
    Proxy("az_trainability", az_nas.az_trainability, ("az_features",),
          "AZ-NAS: mean over blocks of -s - 1/s + 2, s the block Jacobian's spectral norm"),
    Proxy("meco_layers", meco.meco_layers, ("activations",),
          "sum over layers of the min eigenvalue of the channel correlation, one sample"),
    Proxy("meco", meco.meco, ("meco_terms",),
          "MeCo: sum over feature maps of the min eigenvalue of the channel correlation"),
    Proxy("meco_opt", meco.meco_opt, ("meco_terms",),
          "MeCo_opt: MeCo's terms from 8 random channels each, scaled by C / 8"),
    Proxy("vkdnw", vkdnw.vkdnw, (),
          "VKDNW: entropy of the empirical Fisher spectrum's deciles (Kaiming re-init)",
          options=vkdnw.OPTIONS),
    Proxy("vkdnw_dim", vkdnw.vkdnw_dim, (),
          "VKDNW: number of parameter tensors of the per-architecture PyTorch model"),
    Proxy("swap", swap.swap, ("activations",),
          "SWAP: number of distinct ReLU sign patterns of the neurons over S samples",
          options=swap.OPTIONS),
    Proxy("swap_reg", swap.swap_reg, ("activations",),
          "SWAP times exp(-(P - mu)^2 / sigma), P the parameters in millions",
          options=swap.REG_OPTIONS),
):
    register(_builtin)


def _mode_suffix(mode: str) -> str:
    return "" if mode == "none" else f"_{mode}"


# The paper's SSNR and T-CET, in every mode of the per-layer SNR term.
_SALIENCIES = {
    "snip": (gradient.snip_saliencies, ("loss_gradients",)),
    "synflow": (synflow.synflow_saliencies, ("synflow_gradients",)),
    "grasp": (gradient.grasp_saliencies, ("loss_gradients", "grasp_hessian_gradients")),
}
for _mode in SNR_MODES:
    for _base, (_saliencies, _passes) in _SALIENCIES.items():
        _name = f"{_base}_snr{_mode_suffix(_mode)}"
        register(Proxy(_name, snr.make_ssnr(_saliencies, _mode), _passes,
                       f"SSNR of {_base} saliencies, mode {_mode}"))
    for _base in ("snip", "synflow"):
        _saliencies, _passes = _SALIENCIES[_base]
        _name = f"tcet_{_base}{_mode_suffix(_mode)}"
        register(Proxy(_name, snr.make_tcet(_saliencies, _mode), _passes + ("activations",),
                       f"T-CET: SNR of {_base} (mode {_mode}) x Lnwot, per layer"))

CLASSIC = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "plain", "l2_norm",
           "params", "flops", "naswot")
_BUILTIN = frozenset(_REGISTRY)


def names() -> tuple[str, ...]:
    """Every registered proxy name."""
    return tuple(_REGISTRY)


def get(name: str) -> Proxy:
    """The proxy called ``name``; an unknown name raises ``KeyError`` listing valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown proxy {name!r}; valid proxies: {', '.join(sorted(_REGISTRY))}"
        ) from None


def resolve(proxies: str | Iterable[str] | None) -> tuple[Proxy, ...]:
    """Names (a sequence or a comma-separated string; None = all registered) -> proxies.

    Duplicates are dropped, order kept.
    """
    if proxies is None:
        proxies = names()
    elif isinstance(proxies, str):
        proxies = [name.strip() for name in proxies.split(",") if name.strip()]
    resolved = tuple(get(name) for name in dict.fromkeys(proxies))
    if not resolved:
        raise ValueError("no proxy requested")
    return resolved


def is_builtin(name: str) -> bool:
    """Whether the proxy ``name`` ships with zcjax (False: added with :func:`register`, so
    only this process knows it).

    Raises:
      KeyError: no proxy of that name is registered.
    """
    get(name)
    return name in _BUILTIN


def _proxy(proxy_or_name: Proxy | str) -> Proxy:
    return get(proxy_or_name) if isinstance(proxy_or_name, str) else proxy_or_name


def options_read(proxy_or_name: Proxy | str) -> tuple[Option, ...]:
    """Every option a proxy reads, its own and its passes' (transitively), sorted by name."""
    return _options_of(_proxy(proxy_or_name), _PASSES)


def _readers(option_name: str) -> list[str]:
    return [name for name, proxy in _REGISTRY.items()
            if any(option.name == option_name for option in options_read(proxy))]


def validate_options(proxies: Iterable[Proxy | str], options: Mapping[str, Any]) -> dict[str, Any]:
    """The values of every option the proxies read: the user's, checked, or the default.

    A scorer calls this once; the result is what its :class:`ProxyInputs` carry.

    Args:
      proxies: the requested proxies (resolved, or names).
      options: the user's keyword options (``{"activation_bn": "batch"}``).

    Returns:
      ``{option name: value}`` sorted by name, one entry per option any of the proxies
      reads (canonical values: a float option given an int holds a float).

    Raises:
      TypeError: an option none of the proxies reads; the message names the registered
        proxies that do read it, or says that none does.
      ValueError: a value the option does not accept (naming option, value, valid values).
    """
    proxies = tuple(_proxy(proxy) for proxy in proxies)
    readable: dict[str, Option] = {}
    for proxy in proxies:
        readable.update((option.name, option) for option in options_read(proxy))
    unread = [name for name in options if name not in readable]
    if unread:
        requested = ", ".join(proxy.name for proxy in proxies)
        problems = []
        for name in unread:
            readers = _readers(name)
            problems.append(f"option {name!r} is read by none of the requested proxies "
                            f"({requested}); " + (f"proxies that read it: {', '.join(readers)}"
                                                  if readers else "no registered proxy reads it"))
        raise TypeError("; ".join(problems))
    return {name: option.check(options[name]) if name in options else option.default
            for name, option in sorted(readable.items())}


def proxy_settings(proxy_or_name: Proxy | str, validated: Mapping[str, Any]) -> dict[str, Any]:
    """The options one proxy reads, picked from :func:`validate_options`' result (its
    values are JSON-able: what a results store records with that proxy's rows).

    Raises:
      KeyError: ``validated`` lacks an option the proxy reads (it was validated for other
        proxies).
    """
    proxy = _proxy(proxy_or_name)
    settings = {}
    for option in options_read(proxy):
        if option.name not in validated:
            raise KeyError(f"option {option.name!r} of proxy {proxy.name!r} is not among the "
                           f"validated options; validate them for this proxy")
        settings[option.name] = validated[option.name]
    return settings


def pass_order(proxies: Iterable[Proxy | str]) -> tuple[str, ...]:
    """The passes :func:`run` computes for these proxies, in the order it computes them:
    dependencies first, otherwise in the order the proxies list them (each once)."""
    proxies = tuple(_proxy(proxy) for proxy in proxies)
    return _pass_order([name for proxy in proxies for name in proxy.passes], _PASSES, "run")


def user_passes(proxies: Iterable[Proxy | str]) -> tuple[Pass, ...]:
    """The passes these proxies need that do not ship with zcjax, dependencies first."""
    return tuple(_PASSES[name] for name in pass_order(proxies) if name not in _BUILTIN_PASSES)


def register_all(items: Iterable[Pass | Proxy]) -> None:
    """Register passes and proxies another process registered (a worker receiving the
    user's), in order; one already registered under its name is kept."""
    for item in items:
        if isinstance(item, Pass):
            if item.name not in _PASSES:
                register_pass(item)
        elif item.name not in _REGISTRY:
            register(item)


class _Declared(dict):
    """The pass results a pass or proxy declared; reading another is a declaration bug."""

    def __init__(self, reader: str, values: Mapping[str, Any]):
        super().__init__(values)
        self.reader = reader

    def __missing__(self, name):
        raise KeyError(f"{self.reader} read pass {name!r}, which it does not declare "
                       f"(Proxy passes= or Pass requires=)")


def run(proxies: Iterable[Proxy], inputs: ProxyInputs) -> Mapping[str, ProxyOutput]:
    """Every proxy on one architecture, each shared pass computed once.

    The passes run dependencies first, otherwise in the order the proxies list them; each
    pass and proxy sees the results of the passes it declares (and what they require).
    ``inputs.options`` must hold every option the proxies read (:func:`validate_options`).

    Raises:
      KeyError: an option the proxies read is missing from ``inputs.options``.
    """
    proxies = tuple(proxies)
    missing = sorted({option.name for proxy in proxies for option in options_read(proxy)}
                     - set(inputs.options))
    if missing:
        raise KeyError(f"ProxyInputs.options lacks {', '.join(missing)}: build it with "
                       f"zcjax.proxies.validate_options(proxies, options)")
    computed: dict[str, Any] = {}
    for name in pass_order(proxies):
        spec = _PASSES[name]
        computed[name] = spec.fn(inputs, _Declared(f"pass {name!r}",
                                                   {r: computed[r] for r in spec.requires}))
    outputs = {}
    for proxy in proxies:
        needed = _pass_order(proxy.passes, _PASSES, f"proxy {proxy.name!r}")
        outputs[proxy.name] = proxy.fn(inputs, _Declared(f"proxy {proxy.name!r}",
                                                         {n: computed[n] for n in needed}))
    return outputs
