"""Binding Python values to SQLite parameters without the sqlite3 module's slow path.

The ``sqlite3`` module binds ``int``, ``float``, ``str`` and ``bytearray``
directly. Every other value, ``None`` included, first goes through its
adapter lookup, and when no adapter is registered that lookup raises and
clears an ``AttributeError`` (with its formatted message) per parameter:
about 200 ns each, and ingest binds about a dozen such values per event
(the NULL columns of run and node-attempt rows, status enums, flags,
hashes). Registering an adapter for those types finds one at once.

Each adapter returns what the module would have bound anyway (``None``
stays NULL, a bool its integer, a ``StrEnum`` member its text, bytes a
blob), so registering them changes no stored value, and none of them is
for ``int``, ``float`` or ``str``, which would send every value through
the adapters.

The adapters are C callables, not Python functions: the module calls one
per NULL, flag and status it binds (a dozen per event), and a Python-level
call costs several times the C one. ``None`` goes through an empty dict's
``get`` (which answers ``None`` for any key), a bool through
``operator.index`` (its exact ``int``), a member through its ``_value_``.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable
from functools import cache
from typing import Any, Final

from flowledger._wire import EventKind, NodeStatus, RunStatus

__all__ = ["register_adapters"]


_NULL: Final[Callable[[None], None]] = dict[None, None]().get
"""``None`` for any value: the adapter of ``None``, a C call."""
_VALUE: Final = operator.attrgetter("_value_")
"""A ``StrEnum`` member's text, a C call (``str(member)`` goes through the type's constructor)."""


@cache
def register_adapters() -> None:
    """Register the adapters once per process (later calls do nothing)."""
    adapters: dict[type[Any], Any] = {type(None): _NULL, bool: operator.index, bytes: bytes}
    for kind in (EventKind, NodeStatus, RunStatus):
        adapters[kind] = _VALUE
    for python_type, adapter in adapters.items():
        sqlite3.register_adapter(python_type, adapter)
