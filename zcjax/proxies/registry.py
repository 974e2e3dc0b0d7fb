"""Proxy names -> pure functions, and running a set of proxies with shared passes.

The registry is an explicit table (no registration by import side effects). Users add
their own proxies with :func:`register`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from zcjax.aggregate import SNR_MODES
from zcjax.proxies import (counts, epe_nas, gradient, jacob_cov, naswot, snr, synflow, tenas,
                           zen_zico)
from zcjax.proxies.base import ProxyFn, ProxyInputs, ProxyOutput
from zcjax.proxies.passes import PASSES


@dataclasses.dataclass(frozen=True)
class Proxy:
    """A registered proxy: its function and the shared passes it reads."""

    name: str
    fn: ProxyFn
    passes: tuple[str, ...]
    description: str


_REGISTRY: dict[str, Proxy] = {
    proxy.name: proxy
    for proxy in (
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
              "log|det| of the ReLU binary-code kernel"),
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
    )
}


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
        _REGISTRY[_name] = Proxy(_name, snr.make_ssnr(_saliencies, _mode), _passes,
                                 f"SSNR of {_base} saliencies, mode {_mode}")
    for _base in ("snip", "synflow"):
        _saliencies, _passes = _SALIENCIES[_base]
        _name = f"tcet_{_base}{_mode_suffix(_mode)}"
        _REGISTRY[_name] = Proxy(_name, snr.make_tcet(_saliencies, _mode),
                                 _passes + ("activations",),
                                 f"T-CET: SNR of {_base} (mode {_mode}) x Lnwot, per layer")

CLASSIC = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "plain", "l2_norm",
           "params", "flops", "naswot")


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


def register(proxy: Proxy) -> None:
    """Add a proxy under a new name (its passes must be known)."""
    if proxy.name in _REGISTRY:
        raise ValueError(f"a proxy named {proxy.name!r} is already registered")
    unknown = [p for p in proxy.passes if p not in PASSES]
    if unknown:
        raise ValueError(f"proxy {proxy.name!r} needs unknown passes {unknown}; known: "
                         f"{', '.join(PASSES)}")
    _REGISTRY[proxy.name] = proxy


def run(proxies: Iterable[Proxy], inputs: ProxyInputs) -> Mapping[str, ProxyOutput]:
    """Every proxy on one architecture, each shared pass computed once."""
    proxies = tuple(proxies)
    needed = dict.fromkeys(name for proxy in proxies for name in proxy.passes)
    passes = {}
    for name in needed:  # in the order proxies list them: dependencies first
        passes[name] = PASSES[name](inputs, passes)
    return {proxy.name: proxy.fn(inputs, passes) for proxy in proxies}
