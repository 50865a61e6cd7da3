"""Read a definition file (YAML or JSON) into plain values with positions.

Both formats produce the same :class:`Document`: plain Python values (dict,
list, str, int, float, bool, None) plus the 1-based line and column of every
value and of every mapping key, addressed by their path from the root. YAML
is read by :mod:`._yaml` (PyYAML's libyaml parser under the YAML 1.2 core
schema, with duplicate keys reported and aliases bounded). JSON is read here
by a small position-keeping parser built on the standard library's string
scanner, nesting at most :data:`MAX_NESTING` levels deep.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
from pathlib import Path as FsPath
from typing import Any, Final

from flowledger.codegen._document import MAX_NESTING, NESTED_TOO_DEEP, Document, Mark, read_integer, text_problem
from flowledger.codegen._problems import Path, Problems, shown_key
from flowledger.codegen._yaml import MAX_ALIAS_VALUES, read_yaml

__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_NESTING",
    "Document",
    "Mark",
    "load_definition",
    "parse_definition",
    "read_definition",
]

_YAML_SUFFIXES: Final = frozenset({".yaml", ".yml"})
_JSON_SUFFIXES: Final = frozenset({".json"})


def load_definition(path: str | FsPath, *, display_name: str | None = None) -> Document:
    """Read and parse the definition file at ``path``, for :func:`~._validate.validate`.

    Raises :class:`~flowledger.DefinitionError` for a file that cannot be read
    or parsed, naming the place. Problems the reader can read around (a tag,
    a duplicate key, a number out of range) travel in
    :attr:`Document.read_problems`, so that validation lists them together
    with its own.
    """
    name = display_name if display_name is not None else FsPath(path).as_posix()
    problems = Problems(name)
    try:
        raw = FsPath(path).read_bytes()
    except OSError as exc:
        problems.add(0, 0, (), f"cannot read the file ({exc.strerror or exc}); check the path")
        problems.raise_if_any()
        raise AssertionError("unreachable") from exc
    return read_definition(raw, name)


def parse_definition(raw: bytes, file: str) -> Document:
    """Parse definition bytes; the format follows ``file``'s suffix (YAML unless ``.json``). Raises
    :class:`~flowledger.DefinitionError` for any problem of reading, those :func:`read_definition` carries too."""
    doc = read_definition(raw, file)
    if doc.read_problems is not None:
        doc.read_problems.raise_if_any()
    return doc


def read_definition(raw: bytes, file: str) -> Document:
    """:func:`parse_definition`, but the problems it can read around travel in the document
    (:attr:`Document.read_problems`); only a file it cannot read through raises."""
    problems = Problems(file)
    doc = Document(file=file, sha256=hashlib.sha256(raw).hexdigest(), data=None)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add(0, 0, (), f"the file is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8")
        problems.raise_if_any()
    suffix = FsPath(file).suffix.lower()
    if suffix in _JSON_SUFFIXES or (suffix not in _YAML_SUFFIXES and text.lstrip().startswith(("{", "["))):
        doc.is_json = True
        whole = _JsonReader(text, doc, problems).read()
    else:
        whole = read_yaml(text, doc, problems)
    if not whole:
        problems.raise_if_any()
    if problems:
        doc.read_problems = problems
    return doc


# --- JSON -----------------------------------------------------------------

_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS: Final = {"true": True, "false": False, "null": None}


class _JsonSyntaxError(Exception):
    def __init__(self, pos: int, message: str, *, path: Path = (), syntax: bool = True) -> None:
        super().__init__(f"invalid JSON: {message}" if syntax else message)
        self.pos = pos
        self.path = path


class _JsonReader:
    """A strict JSON parser (RFC 8259) that records where each value and key starts."""

    def __init__(self, text: str, doc: Document, problems: Problems) -> None:
        self.text = text
        self.doc = doc
        self.problems = problems
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def mark(self, pos: int) -> Mark:
        """1-based line and column of offset ``pos``."""
        index = bisect.bisect_right(self._line_starts, pos) - 1
        return index + 1, pos - self._line_starts[index] + 1

    def read(self) -> bool:
        """Read the whole text into the document; whether it could be (False: a syntax error, recorded)."""
        try:
            pos = self._skip(0)
            if pos >= len(self.text):
                raise _JsonSyntaxError(pos, "the file is empty; a definition is a JSON object")
            self.doc.data, pos = self._value(pos, ())
            pos = self._skip(pos)
            if pos < len(self.text):
                raise _JsonSyntaxError(pos, "extra data after the JSON value")
        except _JsonSyntaxError as exc:
            self.problems.add(*self.mark(exc.pos), exc.path, str(exc))
            return False
        return True

    def _skip(self, pos: int) -> int:
        match = _WHITESPACE.match(self.text, pos)
        return match.end() if match else pos

    def _value(self, pos: int, path: Path) -> tuple[Any, int]:
        self.doc.values[path] = self.mark(pos)
        char = self.text[pos : pos + 1]
        if char in ("{", "[") and len(path) >= MAX_NESTING:
            raise _JsonSyntaxError(pos, NESTED_TOO_DEEP, path=path, syntax=False)
        if char == "{":
            return self._object(pos + 1, path)
        if char == "[":
            return self._array(pos + 1, path)
        if char == '"':
            text, end = self._string(pos)
            problem = text_problem(text)
            if problem is not None:
                self.problems.add(*self.mark(pos), path, problem, left_out=True)
                return None, end
            return text, end
        for word, value in _LITERALS.items():
            if self.text.startswith(word, pos):
                return value, pos + len(word)
        match = _NUMBER.match(self.text, pos)
        if match and match.end() > pos:
            token = match.group()
            if match.group(1) or match.group(2):
                number = float(token)
                if not math.isfinite(number):  # read around, as a YAML one is
                    message = f"`{token}` is not a finite number; only finite numbers are allowed"
                    self.problems.add(*self.mark(pos), path, message, left_out=True)
                    return None, match.end()
                return number, match.end()
            integer = read_integer(token)
            if isinstance(integer, str):
                self.problems.add(*self.mark(pos), path, integer, left_out=True)
                return None, match.end()
            return integer, match.end()
        found = repr(char) if char else "the end of the file"
        raise _JsonSyntaxError(pos, f"expected a value, found {found}")

    def _string(self, pos: int) -> tuple[str, int]:
        try:
            return json.decoder.scanstring(self.text, pos + 1, True)  # type: ignore[attr-defined,no-any-return]
        except json.JSONDecodeError as exc:
            raise _JsonSyntaxError(exc.pos, exc.msg.lower()) from exc

    def _object(self, pos: int, path: Path) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        pos = self._skip(pos)
        if self.text.startswith("}", pos):
            return out, pos + 1
        while True:
            if not self.text.startswith('"', pos):
                raise _JsonSyntaxError(pos, "expected a key in double quotes")
            key_pos = pos
            key, pos = self._string(pos)
            pos = self._skip(pos)
            if not self.text.startswith(":", pos):
                raise _JsonSyntaxError(pos, "expected `:` after the key")
            pos = self._skip(pos + 1)
            child = (*path, key)
            problem = text_problem(key)
            if problem is not None:  # placed under the key spelt with escapes, so that the problem can be printed
                child = (*path, key.encode("utf-8", "backslashreplace").decode("utf-8"))
                self.problems.add(*self.mark(key_pos), child, problem)  # the key is left out: nothing is at child
                _, pos = self._value(pos, child)
            elif key in out:
                first = self.doc.keys[child]
                self.problems.add(
                    *self.mark(key_pos),
                    child,
                    f"duplicate key `{shown_key(key)}` (first written at line {first[0]}); keep one",
                )
                kept, self.problems = self.problems, Problems(self.problems.file)  # the value left out is not read
                try:
                    _, pos = self._value(pos, (*path, f"\x00dup{key_pos}"))
                finally:
                    self.problems = kept
            else:
                self.doc.keys[child] = self.mark(key_pos)
                out[key], pos = self._value(pos, child)
            pos = self._skip(pos)
            if self.text.startswith(",", pos):
                pos = self._skip(pos + 1)
                continue
            if self.text.startswith("}", pos):
                return out, pos + 1
            raise _JsonSyntaxError(pos, "expected `,` or `}` in the object")

    def _array(self, pos: int, path: Path) -> tuple[list[Any], int]:
        out: list[Any] = []
        pos = self._skip(pos)
        if self.text.startswith("]", pos):
            return out, pos + 1
        while True:
            value, pos = self._value(pos, (*path, len(out)))
            out.append(value)
            pos = self._skip(pos)
            if self.text.startswith(",", pos):
                pos = self._skip(pos + 1)
                continue
            if self.text.startswith("]", pos):
                return out, pos + 1
            raise _JsonSyntaxError(pos, "expected `,` or `]` in the array")
