"""Problems found in a definition, collected and reported together.

A :class:`Problem` names the file, the line and column, the place in the
definition (``nodes[2].needs[0]``), what is wrong and, where it helps, what
is allowed or a close match ("did you mean ..."). Loading and validation
collect every problem before anything is reported, so a user fixes them all
in one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flowledger._exceptions import DefinitionError

__all__ = ["Path", "Problem", "Problems", "did_you_mean", "format_path", "shown_key"]

Path = tuple[str | int, ...]
"""A place in the definition: mapping keys and list indexes from the root."""

_SUGGESTION_CUTOFF = 0.6
"""How similar (difflib ratio) a known name must be to be suggested."""


def shown_key(key: str) -> str:
    """A mapping key as problems print it: as written when every character of it is printable, else escaped as a
    Python string literal (``'a\\nb'``), as values are. A key holding a line break or a terminal escape must not
    break the output's one problem a line, nor write a line (or escape sequence) of its own."""
    return key if key.isprintable() else repr(key)


def format_path(path: Path) -> str:
    """Spell ``("nodes", 2, "needs", 0)`` as ``nodes[2].needs[0]``; the root is ``(root)``. Keys are shown by
    :func:`shown_key`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = shown_key(part)
            out += f".{key}" if out else key
    return out or "(root)"


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """Return the known name closest to ``word``, if one is close enough."""
    matches = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=_SUGGESTION_CUTOFF)
    return matches[0] if matches else None


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition."""

    file: str
    line: int
    """1-based; 0 when the place has no position (e.g. an empty file)."""
    column: int
    """1-based; 0 when unknown."""
    path: str
    message: str
    """What is wrong and what is allowed, as a sentence without a final full stop."""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}" if self.column else f":{self.line}"
        return f"{where}: {self.path}: {self.message}"


class Problems:
    """A collector of problems for one definition file, kept in file order."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._items: list[Problem] = []
        self.places: set[Path] = set()
        """The paths of values left out for their problem (and so everything below them)."""
        self.mappings: set[Path] = set()
        """The paths of mappings a key was left out of for its problem (the key itself has no path)."""

    def add(
        self, line: int, column: int, path: Path, message: str, *, left_out: bool = False, key_of: bool = False
    ) -> None:
        """Record one problem at 1-based ``line``/``column``. ``left_out``: the value at ``path`` was left out
        for it; ``key_of``: a key of the mapping at ``path`` was (see :attr:`places`, :attr:`mappings`)."""
        self._items.append(Problem(self.file, line, column, format_path(path), message))
        if left_out:
            self.places.add(path)
        if key_of:
            self.mappings.add(path)

    def extend(self, other: Problems) -> None:
        """Record every problem of ``other`` (of the same file) too."""
        self._items.extend(other._items)
        self.places |= other.places
        self.mappings |= other.mappings

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> Sequence[Problem]:
        """Every problem, sorted by line, column and place."""
        return sorted(self._items, key=lambda p: (p.line, p.column, p.path, p.message))

    def raise_if_any(self) -> None:
        """Raise :class:`DefinitionError` carrying every problem, if there is one."""
        if self._items:
            items = self.items
            raise DefinitionError([str(p) for p in items], details=[_placed(p) for p in items])


def _placed(problem: Problem) -> dict[str, Any]:
    """A problem's fields for ``validate --json`` (line and column None when the place has none)."""
    return {
        "file": problem.file,
        "line": problem.line or None,
        "column": problem.column or None,
        "path": problem.path,
        "message": problem.message,
    }
