"""A parsed definition: plain values with the place each one was written, and how deep they may nest.

Both definition formats (:mod:`._yaml`, the JSON reader of :mod:`._load`) produce a :class:`Document`. A
definition is user input, so neither reader follows lists and mappings past :data:`MAX_NESTING` levels: a
file cannot exhaust the stack of the reader or of the validator after it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Final

from flowledger.codegen._problems import Path, Problems

__all__ = ["MAX_NESTING", "NESTED_TOO_DEEP", "Document", "Mark", "read_integer", "text_problem"]

Mark = tuple[int, int]
"""A 1-based (line, column)."""

MAX_NESTING: Final = 100
"""How many levels of lists and mappings a definition may nest (the deepest valid one needs about 40)."""
NESTED_TOO_DEEP: Final = (
    f"lists and mappings are nested more than {MAX_NESTING} levels deep; a definition needs far fewer, "
    "so flatten this value"
)
"""The problem of a list or mapping past :data:`MAX_NESTING`."""

_FLOAT_MAX_INT: Final = int(sys.float_info.max)
"""The largest integer a definition may hold: past it a number has no float value (``float()`` overflows)."""
_FLOAT_MAX_DIGITS: Final = len(str(_FLOAT_MAX_INT))
"""Decimal digits of :data:`_FLOAT_MAX_INT`: a longer integer is refused without converting it, since Python
refuses to convert text of more than 4300 digits to an int at all."""


def read_integer(token: str) -> int | str:
    """The integer ``token`` spells (decimal, or YAML's ``0o``/``0x``, with a sign), or the problem with it.

    Both readers bound integers by the float range, as RFC 8259 advises for interoperable JSON: the
    validator, the generated module and the receiver all compare and send them as floats, so a larger one
    would fail there (an ``OverflowError``) instead of here, at its place in the file.
    """
    digits = token.lstrip("+-")
    if digits[:2] in ("0o", "0x"):
        value = int(digits, 0)  # powers of two: no digit limit, and linear in the length
    else:
        significant = digits.lstrip("0") or "0"
        value = int(significant) if len(significant) <= _FLOAT_MAX_DIGITS else _FLOAT_MAX_INT + 1
    if value > _FLOAT_MAX_INT:
        shown = f"{digits[:6]}...{digits[-4:]}" if len(digits) > 12 else digits
        return (
            f"the number `{shown}` has {len(digits)} digits, beyond the range of a 64-bit float (about 1.8e308); "
            "write a smaller number"
        )
    return -value if token.startswith("-") else value


def text_problem(text: str) -> str | None:
    """The problem with a string that is not Unicode text (it holds a lone surrogate), or None.

    JSON's ``\\ud800`` escapes can spell half a character; such a string cannot be encoded as UTF-8, so the
    generated module, its run records and the receiver would fail on it at run time.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"the string holds a lone surrogate (`\\u{ord(text[exc.start]):04x}`), which is not Unicode text; "
            "remove it or write a whole character"
        )
    return None


@dataclass(slots=True)
class Document:
    """A parsed definition: its values and where each one was written."""

    file: str
    sha256: str
    """Hex sha256 of the file's bytes."""
    data: Any
    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)
    """Position of the key that holds the value at a path (mapping entries only)."""
    is_json: bool = False
    """Read as JSON rather than YAML (a YAML-only hint would mislead)."""
    read_problems: Problems | None = None
    """What the reader found wrong but could read around (a tag, a key that is not a string, a duplicate key, a
    number out of range): each such value is None in :attr:`data`, each such key left out. Validation reports
    these with its own problems and says nothing more of the places they name."""

    def value_mark(self, path: Path) -> Mark:
        """Position of the value at ``path``, or of its nearest ancestor."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (0, 0))

    def key_mark(self, path: Path) -> Mark:
        """Position of the key holding ``path``, falling back to the value's position."""
        return self.keys.get(path) or self.value_mark(path)
