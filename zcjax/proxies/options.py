"""Option declarations: a static choice that changes what a pass or a proxy computes.

Each option is declared once, next to the code that reads it (``passes.py`` for the pass
options, ``naswot.py`` for naswot's), and attached to its :class:`~zcjax.proxies.base.Pass`
or :class:`~zcjax.proxies.registry.Proxy`. A proxy reads its own options and those of
every pass it needs, so a scorer accepts exactly those, and a stored row's settings hold
only them (:func:`zcjax.proxies.registry.proxy_settings`).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: its name, default, valid values and meaning.

    Attributes:
      name: the keyword users pass (``make_scorer(..., activation_bn="batch")``); one name
        has one meaning across every registered proxy.
      default: the value when the user does not pass one.
      choices: the only valid values, or None for any value of ``kind``.
      kind: the value's type (bool, float, int or str; float also accepts ints); default
        ``type(default)``. Values are JSON-able, since they are stored with each row.
      doc: what the option changes, and which reference each value reproduces.
    """

    name: str
    default: Any
    choices: tuple | None = None
    kind: type | None = None
    doc: str = ""

    def __post_init__(self):
        if self.kind is None:
            object.__setattr__(self, "kind", type(self.default))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        self.check(self.default)  # a declaration whose default is invalid fails at import

    def check(self, value: Any) -> Any:
        """``value`` in its canonical form (``float`` for a float option given an int).

        Raises:
          ValueError: naming the option, the value and the valid values.
        """
        if self.kind is bool:
            valid = isinstance(value, (bool, np.bool_))
        elif self.kind is float:
            valid = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        elif self.kind is int:
            valid = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
        else:
            valid = isinstance(value, self.kind)
        if valid and self.choices is not None:
            valid = value in self.choices
        if not valid:
            wanted = (", ".join(map(repr, self.choices)) if self.choices is not None
                      else f"a {self.kind.__name__}")
            raise ValueError(f"option {self.name}={value!r} is not valid; valid values: {wanted}")
        return self.kind(value) if self.kind in (bool, float, int) else value
