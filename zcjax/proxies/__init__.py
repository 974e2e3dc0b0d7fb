"""Zero-cost proxies as pure functions, and their registry."""

from zcjax.proxies.base import Options, ProxyInputs, ProxyOutput
from zcjax.proxies.registry import CLASSIC, Proxy, get, names, register, resolve, run

__all__ = [
    "CLASSIC",
    "Options",
    "Proxy",
    "ProxyInputs",
    "ProxyOutput",
    "get",
    "names",
    "register",
    "resolve",
    "run",
]
