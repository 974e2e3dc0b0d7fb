"""The ``settings`` of a stored score: the network configuration and the options its proxy reads.

A results-store row's ``settings`` are canonical JSON, ``{"config": {...}, "options":
{...}}``: the space's ``Config`` and, of the proxy options, only those the row's proxy reads
(:func:`zcjax.proxies.options_read`: its own and its passes'). Adding an option for one
proxy therefore changes no other proxy's settings, and stores keep resuming.

Compatibility rule for stores written before proxies owned their options (zcjax up to
commit ca60768, where every row held all six options of the old global ``Options``):
:func:`canonical` keeps only the options the row's proxy reads, and fills an option it
lacks with that option's default. A new option must therefore default to the behaviour
from before it existed; then old rows and new rows of one run are the same identity.
Rows of a proxy this process does not know (a user proxy not registered now) are kept as
they were written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from zcjax.proxies import registry


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def encode(config: Any, options: Mapping[str, Any]) -> str:
    """Canonical JSON of a network ``Config`` (a dataclass) and one proxy's options."""
    return _dumps({"config": dataclasses.asdict(config), "options": dict(options)})


def decode(settings: str) -> dict[str, Any] | None:
    """The parsed settings, or None when they are not zcjax's ``{config, options}`` JSON."""
    try:
        parsed = json.loads(settings)
    except (TypeError, ValueError):
        return None
    if not isinstance(parsed, dict) or set(parsed) != {"config", "options"}:
        return None
    if not isinstance(parsed["options"], dict):
        return None
    return parsed


def canonical(settings: str, proxy: str) -> str:
    """Today's form of a stored row's settings (see the module's compatibility rule)."""
    parsed = decode(settings)
    if parsed is None:
        return settings
    try:
        read = registry.options_read(proxy)
    except KeyError:
        return settings
    stored = parsed["options"]
    options = {option.name: stored.get(option.name, option.default) for option in read}
    return _dumps({"config": parsed["config"], "options": options})


def canonical_column(frame: pd.DataFrame) -> pd.Series:
    """:func:`canonical` of every row of a frame with ``settings`` and ``proxy`` columns.

    Computed once per distinct (settings, proxy) pair: a store repeats a handful of them.
    """
    pairs = frame[["settings", "proxy"]].astype(str)
    cache = {pair: canonical(*pair) for pair in
             pairs.drop_duplicates().itertuples(index=False, name=None)}
    return pd.Series([cache[pair] for pair in pairs.itertuples(index=False, name=None)],
                     index=frame.index, dtype=object)


def flatten(settings: str) -> dict[str, Any]:
    """``{"config.channels": [16, 32, 64], "options.activation_bn": "init", ...}``; a
    settings string zcjax did not write is one entry, ``{"settings": settings}``."""
    parsed = decode(settings)
    if parsed is None:
        return {"settings": settings}
    return {f"{part}.{name}": value for part in ("config", "options")
            for name, value in parsed[part].items()}
