"""A stored score's ``settings``: the network, how its weights were drawn, the proxy's options.

A results-store row's ``settings`` are canonical JSON, ``{"config": {...}, "init_draw":
"one", "options": {...}}``: the space's ``Config``, the initialisation's draw
(:mod:`zcjax.initialisation`) and, of the proxy options, only those the row's proxy reads
(:func:`zcjax.proxies.options_read`: its own and its passes'). Adding an option for one
proxy therefore changes no other proxy's settings, and stores keep resuming.

Compatibility rules, applied by :func:`canonical`:

* Stores written before proxies owned their options (zcjax up to commit ca60768, where
  every row held all six options of the old global ``Options``): only the options the
  row's proxy reads are kept, and an option it lacks is filled with that option's
  default. A new option must therefore default to the behaviour from before it existed;
  then old rows and new rows of one run are the same identity. Rows of a proxy this
  process does not know (a user proxy not registered now) keep their options as written.
* Stores written before ``init_draw`` existed (up to commit 0e3c075) drew the weights
  per array: a row without ``init_draw`` is ``"per_array"``, a different identity from
  today's default ``"one"`` (its weights differ), and resumes with ``init_draw="per_array"``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from zcjax import initialisation
from zcjax.proxies import registry

_FIELDS = {"config", "init_draw", "options"}
_LEGACY_FIELDS = {"config", "options"}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def encode(config: Any, options: Mapping[str, Any],
           init_draw: str = initialisation.DEFAULT_INIT_DRAW) -> str:
    """Canonical JSON of a network ``Config`` (a dataclass), the initialisation's draw and
    one proxy's options."""
    return _dumps({"config": dataclasses.asdict(config), "init_draw": init_draw,
                   "options": dict(options)})


def decode(settings: str) -> dict[str, Any] | None:
    """The parsed settings (``init_draw`` filled in), or None when they are not zcjax's
    ``{config, init_draw, options}`` (or older ``{config, options}``) JSON."""
    try:
        parsed = json.loads(settings)
    except (TypeError, ValueError):
        return None
    if not isinstance(parsed, dict) or set(parsed) not in (_FIELDS, _LEGACY_FIELDS):
        return None
    if not isinstance(parsed["options"], dict):
        return None
    parsed.setdefault("init_draw", initialisation.LEGACY_INIT_DRAW)
    return parsed


def canonical(settings: str, proxy: str) -> str:
    """Today's form of a stored row's settings (see the module's compatibility rule)."""
    parsed = decode(settings)
    if parsed is None:
        return settings
    stored = parsed["options"]
    try:
        read = registry.options_read(proxy)
    except KeyError:
        options = stored
    else:
        options = {option.name: stored.get(option.name, option.default) for option in read}
    return _dumps({**parsed, "options": options})


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
    """``{"config.channels": [16, 32, 64], "init_draw": "one", "options.activation_bn":
    "init", ...}``; a settings string zcjax did not write is one entry, ``{"settings":
    settings}``."""
    parsed = decode(settings)
    if parsed is None:
        return {"settings": settings}
    flat = {f"config.{name}": value for name, value in parsed["config"].items()}
    flat["init_draw"] = parsed["init_draw"]
    flat.update({f"options.{name}": value for name, value in parsed["options"].items()})
    return flat
