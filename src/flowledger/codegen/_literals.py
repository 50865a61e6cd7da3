"""Python literals made by the generator: the only way definition values reach code.

:func:`literal` turns a JSON value (or a :class:`Construct`, a call the
generator itself builds, like ``fw.Env("KEY")``) into Python source that
evaluates back to the same value, laid out the way ``ruff format`` would:
on one line when it fits in :data:`LINE_WIDTH`, otherwise one item per line
with a trailing comma. Strings are escaped character by character, so no
quote, backslash, newline, brace or Unicode line separator in a value can
end the literal early.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["INDENT", "LINE_WIDTH", "Code", "Construct", "literal", "string_literal"]

LINE_WIDTH: Final = 120
INDENT: Final = "    "

_SIMPLE_ESCAPES: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class Code(str):
    """Source text the generator made; the only thing templates may print."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Construct:
    """A call the generator builds, e.g. ``fw.Env("KEY")``; ``func`` is generator-chosen code."""

    func: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def string_literal(text: str) -> str:
    """A double-quoted (single-quoted if that needs fewer escapes) literal equal to ``text``."""
    quote = "'" if '"' in text and "'" not in text else '"'
    out = [quote]
    for char in text:
        if char in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[char])
        elif char == quote:
            out.append("\\" + char)
        elif char.isprintable() and char not in "\x85\u2028\u2029\ufeff":
            out.append(char)
        else:
            point = ord(char)
            if point < 0x100:
                out.append(f"\\x{point:02x}")
            elif point < 0x10000:
                out.append(f"\\u{point:04x}")
            else:
                out.append(f"\\U{point:08x}")
    out.append(quote)
    return "".join(out)


def _scalar(value: Any) -> str | None:
    if isinstance(value, Code):  # generator-made code, e.g. an enum member
        return str(value)
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no Python literal")
        return repr(value)
    if isinstance(value, str):
        return string_literal(value)
    return None


def _parts(value: Any) -> tuple[str, str, list[tuple[str, Any]]]:
    """Opening text, closing text and ``(prefix, item)`` pairs of a container."""
    if isinstance(value, Construct):
        items = [("", a) for a in value.args] + [(f"{k}=", v) for k, v in value.kwargs]
        return f"{value.func}(", ")", items
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be strings, found {type(key).__name__}")
        return "{", "}", [(string_literal(k) + ": ", v) for k, v in value.items()]
    if isinstance(value, tuple):
        return "(", ")", [("", v) for v in value]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[", "]", [("", v) for v in value]
    raise TypeError(f"no literal for a {type(value).__name__}")


def _flat(value: Any) -> str:
    scalar = _scalar(value)
    if scalar is not None:
        return scalar
    opening, closing, items = _parts(value)
    inner = ", ".join(prefix + _flat(item) for prefix, item in items)
    if isinstance(value, tuple) and len(items) == 1:
        inner += ","
    return opening + inner + closing


def literal(value: Any, *, indent: int = 0, prefix: str = "", suffix: str = "") -> Code:
    """``prefix + literal + suffix``, wrapped like ruff format at ``indent`` levels of four spaces.

    The first line carries no indentation (the template places it); the
    following lines do.
    """
    flat = _flat(value)
    if len(INDENT) * indent + len(prefix) + len(flat) + len(suffix) <= LINE_WIDTH or _scalar(value) is not None:
        return Code(prefix + flat + suffix)
    opening, closing, items = _parts(value)
    if not items:
        return Code(prefix + flat + suffix)
    pad = INDENT * (indent + 1)
    lines = [prefix + opening]
    for item_prefix, item in items:
        lines.append(pad + literal(item, indent=indent + 1, prefix=item_prefix, suffix=","))
    lines.append(INDENT * indent + closing + suffix)
    return Code("\n".join(lines))
