"""The paper's refined proxies: SSNR (saliency signal-to-noise ratio) and T-CET.

SSNR = sum_l S_l / sigma_l of a per-weight saliency (snip, synflow, grasp); T-CET =
sum_l (S_l / sigma_l) * log|det K_l|, the layer-wise product with Lnwot. Each comes in
the modes of :data:`zcjax.aggregate.SNR_MODES` (``snip_snr``, ``snip_snr_log``, ...).

Reference: Xiang et al., "Exploiting Network Compressibility and Topology in Zero-Cost
NAS", AutoML-Conf 2023; alethiometer's ``snr_*`` and ``tcet_*``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zcjax import aggregate
from zcjax.proxies.base import ProxyInputs, ProxyOutput
from zcjax.proxies.naswot import layer_logdets


def make_ssnr(saliencies: Callable, mode: str = "none"):
    """An SSNR proxy over ``saliencies(inputs, passes) -> per-layer per-weight arrays``."""

    def ssnr_proxy(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
        active = inputs.active
        score, terms = aggregate.ssnr(saliencies(inputs, passes), active, mode)
        return ProxyOutput(score, terms, active)

    return ssnr_proxy


def make_tcet(saliencies: Callable, mode: str = "none"):
    """A T-CET proxy: the SNR of ``saliencies`` times Lnwot's log dets, layer by layer."""

    def tcet_proxy(inputs: ProxyInputs, passes: Mapping[str, Any]) -> ProxyOutput:
        active = inputs.active
        score, products = aggregate.tcet(saliencies(inputs, passes),
                                         layer_logdets(inputs, passes), active, mode)
        return ProxyOutput(score, products, active)

    return tcet_proxy
