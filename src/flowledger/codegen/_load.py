"""Read a definition file (YAML or JSON) into plain values with positions.

Both formats produce the same :class:`Document`: plain Python values (dict,
list, str, int, float, bool, None) plus the 1-based line and column of every
value and of every mapping key, addressed by their path from the root. YAML
is composed by PyYAML's libyaml parser under the YAML 1.2 core schema and
converted node by node, so duplicate keys are reported (all of them, not just
the first) instead of silently merged.
JSON is read by a small position-keeping parser built on the standard
library's string scanner.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path as FsPath
from typing import Any, Final

from flowledger.codegen._problems import Path, Problems

__all__ = ["Document", "Mark", "load_definition", "parse_definition"]

Mark = tuple[int, int]
"""A 1-based (line, column)."""

_YAML_SUFFIXES: Final = frozenset({".yaml", ".yml"})
_JSON_SUFFIXES: Final = frozenset({".json"})


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


def load_definition(path: str | FsPath, *, display_name: str | None = None) -> Document:
    """Read and parse the definition file at ``path``.

    Raises :class:`~flowledger.DefinitionError` for a file that cannot be read
    or parsed, naming the place.
    """
    name = display_name if display_name is not None else FsPath(path).as_posix()
    problems = Problems(name)
    try:
        raw = FsPath(path).read_bytes()
    except OSError as exc:
        problems.add(0, 0, (), f"cannot read the file ({exc.strerror or exc}); check the path")
        problems.raise_if_any()
        raise AssertionError("unreachable") from exc
    return parse_definition(raw, name)


def parse_definition(raw: bytes, file: str) -> Document:
    """Parse definition bytes; the format follows ``file``'s suffix (YAML unless ``.json``)."""
    problems = Problems(file)
    doc = Document(file=file, sha256=hashlib.sha256(raw).hexdigest(), data=None)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add(0, 0, (), f"the file is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8")
        problems.raise_if_any()
    suffix = FsPath(file).suffix.lower()
    if suffix in _JSON_SUFFIXES:
        _JsonReader(text, doc, problems).read()
    else:
        if suffix not in _YAML_SUFFIXES and text.lstrip().startswith(("{", "[")):
            _JsonReader(text, doc, problems).read()
        else:
            _read_yaml(text, doc, problems)
    problems.raise_if_any()
    return doc


# --- YAML -----------------------------------------------------------------

_TAG_PREFIX: Final = "tag:yaml.org,2002:"

# The YAML 1.2 core schema's plain scalars (https://yaml.org/spec/1.2.2/#1032-tag-resolution): so `on`, `yes`
# and `no` stay strings and `0777` an integer in base ten, unlike the YAML 1.1 rules PyYAML resolves by default.
_CORE_SCHEMA: Final = (
    ("null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
)


@cache
def _composer() -> Callable[[str], Any]:
    """A function composing YAML text into nodes with their marks, resolved by the YAML 1.2 core schema.

    PyYAML's libyaml binding (``CParser``) parses and composes in C; without it (PyYAML built without
    libyaml) the same resolver runs on the pure-Python parser.
    """
    # lazy: PyYAML is a dependency of the codegen extra that only YAML definitions need
    import yaml
    from yaml.resolver import BaseResolver

    class CoreSchemaResolver(BaseResolver):  # type: ignore[misc]
        pass

    CoreSchemaResolver.yaml_implicit_resolvers = {}
    for kind, pattern, first in _CORE_SCHEMA:
        CoreSchemaResolver.add_implicit_resolver(_TAG_PREFIX + kind, re.compile(pattern), list(first) or None)
    CoreSchemaResolver.add_implicit_resolver(_TAG_PREFIX + "null", re.compile(r"^$"), [""])

    if getattr(yaml, "__with_libyaml__", False):
        from yaml.cyaml import CParser

        class Loader(CParser, CoreSchemaResolver):  # type: ignore[misc]
            def __init__(self, stream: str) -> None:
                CParser.__init__(self, stream)
                CoreSchemaResolver.__init__(self)

    else:  # pragma: no cover - PyYAML wheels ship libyaml
        from yaml.composer import Composer
        from yaml.parser import Parser
        from yaml.reader import Reader
        from yaml.scanner import Scanner

        class Loader(Reader, Scanner, Parser, Composer, CoreSchemaResolver):  # type: ignore[no-redef,misc]
            def __init__(self, stream: str) -> None:
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                Parser.__init__(self)
                Composer.__init__(self)
                CoreSchemaResolver.__init__(self)

    def compose(text: str) -> Any:
        loader = Loader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()

    return compose


def _read_yaml(text: str, doc: Document, problems: Problems) -> None:
    from yaml.error import MarkedYAMLError, YAMLError  # lazy, as in _composer

    try:
        root = _composer()(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        problems.add(line, column, (), f"invalid YAML: {what or exc}")
        return
    except YAMLError as exc:
        problems.add(0, 0, (), f"invalid YAML: {exc}")
        return
    if root is None:
        problems.add(1, 1, (), "the file is empty; a definition starts with `flowledger: 1`")
        return
    doc.data = _convert_yaml(root, (), doc, problems)


def _convert_yaml(node: Any, path: Path, doc: Document, problems: Problems) -> Any:
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode  # lazy, as in _composer

    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    doc.values[path] = (line, column)
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key_node, ScalarNode):
                problems.add(*key_mark, path, "a mapping key must be a plain string")
                continue
            key = str(key_node.value)
            if key_node.tag == _TAG_PREFIX + "merge" or key == "<<":
                problems.add(*key_mark, path, "YAML merge keys (<<) are not supported; write the keys out")
                continue
            child = (*path, key)
            if key in out:
                first = doc.keys[child]
                problems.add(*key_mark, child, f"duplicate key `{key}` (first written at line {first[0]}); keep one")
                continue
            doc.keys[child] = key_mark
            out[key] = _convert_yaml(value_node, child, doc, problems)
        return out
    if isinstance(node, SequenceNode):
        return [_convert_yaml(item, (*path, index), doc, problems) for index, item in enumerate(node.value)]
    if isinstance(node, ScalarNode):
        return _yaml_scalar(node, path, (line, column), problems)
    problems.add(line, column, path, "unsupported YAML node")
    return None


_YAML_INT: Final = re.compile(r"[-+]?(0o[0-7]+|0x[0-9a-fA-F]+|[0-9]+)\Z")


def _yaml_scalar(node: Any, path: Path, mark: Mark, problems: Problems) -> Any:
    tag = str(node.tag)
    value = str(node.value)
    if not tag.startswith(_TAG_PREFIX):
        problems.add(*mark, path, f"custom YAML tags ({tag}) are not supported")
        return None
    kind = tag.removeprefix(_TAG_PREFIX)
    if kind == "str":
        return value
    if kind == "null":
        return None
    if kind == "bool":
        return value.lower() == "true"
    if kind == "int" and _YAML_INT.match(value):
        sign = -1 if value.startswith("-") else 1
        digits = value.lstrip("+-")
        return sign * int(digits, 0) if digits[:2] in ("0o", "0x") else sign * int(digits)
    if kind == "float":
        try:
            number = float(value.replace("_", ""))
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            problems.add(*mark, path, f"`{value}` is not a finite number; only finite numbers are allowed")
            return None
        return number
    problems.add(*mark, path, f"YAML values of type `{kind}` are not supported; quote `{value}` to make it a string")
    return None


# --- JSON -----------------------------------------------------------------

_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS: Final = {"true": True, "false": False, "null": None}


class _JsonSyntaxError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos


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

    def read(self) -> None:
        try:
            pos = self._skip(0)
            if pos >= len(self.text):
                raise _JsonSyntaxError(pos, "the file is empty; a definition is a JSON object")
            self.doc.data, pos = self._value(pos, ())
            pos = self._skip(pos)
            if pos < len(self.text):
                raise _JsonSyntaxError(pos, "extra data after the JSON value")
        except _JsonSyntaxError as exc:
            self.problems.add(*self.mark(exc.pos), (), f"invalid JSON: {exc}")

    def _skip(self, pos: int) -> int:
        match = _WHITESPACE.match(self.text, pos)
        return match.end() if match else pos

    def _value(self, pos: int, path: Path) -> tuple[Any, int]:
        self.doc.values[path] = self.mark(pos)
        char = self.text[pos : pos + 1]
        if char == "{":
            return self._object(pos + 1, path)
        if char == "[":
            return self._array(pos + 1, path)
        if char == '"':
            return self._string(pos)
        for word, value in _LITERALS.items():
            if self.text.startswith(word, pos):
                return value, pos + len(word)
        match = _NUMBER.match(self.text, pos)
        if match and match.end() > pos:
            token = match.group()
            number: Any = float(token) if match.group(1) or match.group(2) else int(token)
            if isinstance(number, float) and not math.isfinite(number):
                raise _JsonSyntaxError(pos, f"`{token}` is not a finite number")
            return number, match.end()
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
            if key in out:
                first = self.doc.keys[child]
                self.problems.add(
                    *self.mark(key_pos), child, f"duplicate key `{key}` (first written at line {first[0]}); keep one"
                )
                _, pos = self._value(pos, (*path, f"\x00dup{key_pos}"))
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
