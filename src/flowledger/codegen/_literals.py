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


def _quote_for(text: str) -> str:
    """Double quotes unless the text holds more of them than single quotes (ruff format's rule)."""
    return _quote_given(text.count('"'), text.count("'"))


def _quote_given(doubles: int, singles: int) -> str:
    """:func:`_quote_for` a text holding ``doubles`` double quotes and ``singles`` single quotes."""
    return "'" if doubles > singles else '"'


def _escape(char: str, quote: str) -> str:
    if char in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[char]
    if char == quote:
        return "\\" + char
    if char.isprintable() and char not in "\x85\u2028\u2029\ufeff":
        return char
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def string_literal(text: str) -> str:
    """A double-quoted (single-quoted if that needs fewer escapes) literal equal to ``text``."""
    quote = _quote_for(text)
    return quote + "".join(_escape(char, quote) for char in text) + quote


def _string_pieces(text: str, width: int) -> list[str]:
    """``text`` cut into literals of at most ``width`` characters, preferably after spaces.

    Each piece is measured with the quote the rest of the text would take; the quotes left are counted down
    piece by piece (not counted again in the rest), so a long string is cut in time linear in its length.
    """
    pieces: list[str] = []
    start = 0
    doubles, singles = text.count('"'), text.count("'")
    """The quotes of each kind in ``text[start:]``."""
    while start < len(text):
        end = start
        size = 2
        last_space = -1
        quote = _quote_given(doubles, singles)
        while end < len(text):
            step = len(_escape(text[end], quote))
            if size + step > width and end > start:
                break
            size += step
            if text[end] == " ":
                last_space = end
            end += 1
        if end < len(text) and last_space > start + (end - start) // 2:
            end = last_space + 1
        piece = text[start:end]
        pieces.append(string_literal(piece))
        doubles -= piece.count('"')
        singles -= piece.count("'")
        start = end
    return pieces


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
    if len(INDENT) * indent + len(prefix) + len(flat) + len(suffix) <= LINE_WIDTH:
        return Code(prefix + flat + suffix)
    if isinstance(value, str) and not isinstance(value, Code):
        pieces = _string_pieces(value, LINE_WIDTH - len(INDENT) * (indent + 1))
        body = "\n".join(INDENT * (indent + 1) + piece for piece in pieces)
        return Code(f"{prefix}(\n{body}\n{INDENT * indent}){suffix}")
    if _scalar(value) is not None:
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
