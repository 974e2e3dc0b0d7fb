"""Zero-cost proxies as pure functions, the passes they share, their options, and the
registry that names them."""

from zcjax.proxies.base import Pass, ProxyInputs, ProxyOutput
from zcjax.proxies.options import Option
from zcjax.proxies.registry import (CLASSIC, Proxy, get, is_builtin, names, options_read,
                                    pass_order, proxy_settings, register, register_pass,
                                    resolve, run, validate_options)

__all__ = [
    "CLASSIC",
    "Option",
    "Pass",
    "Proxy",
    "ProxyInputs",
    "ProxyOutput",
    "get",
    "is_builtin",
    "names",
    "options_read",
    "pass_order",
    "proxy_settings",
    "register",
    "register_pass",
    "resolve",
    "run",
    "validate_options",
]
