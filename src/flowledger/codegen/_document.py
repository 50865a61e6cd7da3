"""A parsed definition: plain values with the place each one was written, and how deep they may nest.

Both definition formats (:mod:`._yaml`, the JSON reader of :mod:`._load`) produce a :class:`Document`. A
definition is user input, so neither reader follows lists and mappings past :data:`MAX_NESTING` levels: a
file cannot exhaust the stack of the reader or of the validator after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from flowledger.codegen._problems import Path

__all__ = ["MAX_NESTING", "NESTED_TOO_DEEP", "Document", "Mark"]

Mark = tuple[int, int]
"""A 1-based (line, column)."""

MAX_NESTING: Final = 100
"""How many levels of lists and mappings a definition may nest (the deepest valid one needs about 40)."""
NESTED_TOO_DEEP: Final = (
    f"lists and mappings are nested more than {MAX_NESTING} levels deep; a definition needs far fewer, "
    "so flatten this value"
)
"""The problem of a list or mapping past :data:`MAX_NESTING`."""


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

    def value_mark(self, path: Path) -> Mark:
        """Position of the value at ``path``, or of its nearest ancestor."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (0, 0))

    def key_mark(self, path: Path) -> Mark:
        """Position of the key holding ``path``, falling back to the value's position."""
        return self.keys.get(path) or self.value_mark(path)
