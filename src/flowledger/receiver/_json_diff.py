"""A structural diff of two JSON values: what changed, where, as JSONPath-like paths.

``json_diff(a, b)`` walks both values together and lists each difference
once, at the deepest place it can be told: a key added or removed from an
object, an item added or removed at the end of an array, a value changed,
or a value whose JSON type changed (then its contents are not compared).
Arrays are compared item by item by position. Paths read ``$``,
``$.key``, ``$["odd key"]`` and ``$[3]``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Change", "ChangeKind", "json_diff"]

_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_CHANGES: Final = 200
"""At most this many changes are listed (the rest are counted in a final ``truncated`` change)."""


class ChangeKind(enum.StrEnum):
    """What happened at a path."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    TYPE_CHANGED = "type_changed"
    TRUNCATED = "truncated"
    """Past MAX_CHANGES: ``a`` says how many more differences were not listed."""


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: its path, its kind, and the values on each side (None where absent)."""

    path: str
    kind: ChangeKind
    a: Any = None
    b: Any = None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind.value, "a": self.a, "b": self.b}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if _PLAIN_KEY.match(key) else f"{path}[{_quote(key)}]"


def _quote(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def json_diff(a: Any, b: Any, *, limit: int = MAX_CHANGES) -> list[Change]:
    """The differences between JSON values ``a`` and ``b`` (empty when equal)."""
    out: list[Change] = []
    extra = [0]

    def add(change: Change) -> None:
        if len(out) < limit:
            out.append(change)
        else:
            extra[0] += 1

    def walk(x: Any, y: Any, path: str) -> None:
        kx, ky = _kind(x), _kind(y)
        if kx != ky:
            add(Change(path, ChangeKind.TYPE_CHANGED, x, y))
        elif kx == "object":
            for key in x:
                if key not in y:
                    add(Change(_key_path(path, str(key)), ChangeKind.REMOVED, x[key], None))
                else:
                    walk(x[key], y[key], _key_path(path, str(key)))
            for key in y:
                if key not in x:
                    add(Change(_key_path(path, str(key)), ChangeKind.ADDED, None, y[key]))
        elif kx == "array":
            for index in range(max(len(x), len(y))):
                where = f"{path}[{index}]"
                if index >= len(y):
                    add(Change(where, ChangeKind.REMOVED, x[index], None))
                elif index >= len(x):
                    add(Change(where, ChangeKind.ADDED, None, y[index]))
                else:
                    walk(x[index], y[index], where)
        elif x != y:
            add(Change(path, ChangeKind.CHANGED, x, y))

    walk(a, b, "$")
    if extra[0]:
        out.append(Change("$", ChangeKind.TRUNCATED, extra[0], None))
    return out
