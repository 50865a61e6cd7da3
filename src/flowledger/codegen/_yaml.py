"""Read a YAML definition into plain values with positions, aliases and nesting bounded.

PyYAML's libyaml parser turns the text into events, scalars are resolved by the YAML 1.2 core schema, and
:class:`_YamlReader` builds the values from the events (PyYAML's composer is not used), recording the 1-based
line and column of every value and mapping key. So duplicate keys are reported (all of them, not just the
first) instead of silently merged, and aliases stay safe: an alias is a copy of its anchor's value read in
full, so no value contains itself; copies count against :data:`MAX_ALIAS_VALUES`, so nested aliases ("billion
laughs") stop at the first alias past it; and nesting stops at :data:`MAX_NESTING` levels, aliases included.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from flowledger.codegen._document import MAX_NESTING, NESTED_TOO_DEEP, Document, Mark, read_integer
from flowledger.codegen._problems import Path, Problems, shown_key

__all__ = ["MAX_ALIAS_VALUES", "read_yaml"]

MAX_ALIAS_VALUES: Final = 100_000
"""How many values YAML aliases may copy in all, each use of an alias copying its anchor's whole value."""

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
def _yaml_loader() -> Callable[[str], Any]:
    """A loader class parsing YAML text into events with their marks, resolving scalars by the YAML 1.2 core schema.

    PyYAML's libyaml binding (``CParser``) parses in C; without it (PyYAML built without libyaml) the same
    resolver runs on the pure-Python parser. Values are built by :class:`_YamlReader`, not by PyYAML, so
    that aliases and nesting stay bounded.
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
        from yaml.parser import Parser
        from yaml.reader import Reader
        from yaml.scanner import Scanner

        class Loader(Reader, Scanner, Parser, CoreSchemaResolver):  # type: ignore[no-redef,misc]
            def __init__(self, stream: str) -> None:
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                Parser.__init__(self)
                CoreSchemaResolver.__init__(self)

    return Loader


_REFUSED: Final = "[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
"""Characters the YAML parser cannot be given as they are (see :func:`_refused_characters`)."""
_LINE_BREAK_OR_REFUSED: Final = re.compile(f"(\r\n?|\n)|({_REFUSED})")
_YAML11_BREAKS: Final = {"\x85": "NEXT LINE", "\u2028": "LINE SEPARATOR", "\u2029": "PARAGRAPH SEPARATOR"}


def _refused_characters(text: str, problems: Problems) -> bool:
    """Add a problem, at its line and column, for each character of ``text`` the parser cannot be given as it is;
    whether there was one.

    Control characters (and U+FFFE, U+FFFF) are not allowed in YAML text, only as escapes in double-quoted
    strings. U+0085, U+2028 and U+2029 are allowed in YAML 1.2, which definitions are read as, but libyaml
    follows YAML 1.1, where they are line breaks: it would turn one in a value into a space, or refuse it in a
    plain value, and shift the line numbers of every problem after it. Both are refused before parsing, with the
    escape to write instead. Lines are counted as YAML 1.2 counts them (LF, CR, CRLF).
    """
    line, line_start, found = 1, 0, False
    for match in _LINE_BREAK_OR_REFUSED.finditer(text):
        if match.group(1) is not None:
            line, line_start = line + 1, match.end()
            continue
        found = True
        char = match.group(2)
        code = ord(char)
        escape = f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
        if char in _YAML11_BREAKS:
            what = (
                f"the character U+{code:04X} ({_YAML11_BREAKS[char]}) would be read as a line break by the YAML "
                "parser, changing the value and the line numbers after it"
            )
        else:
            what = f"the control character U+{code:04X} is not allowed in YAML text"
        problems.add(
            line,
            match.start() - line_start + 1,
            (),
            f"{what}; write it as the escape {escape} inside a double-quoted string",
        )
    return found


def read_yaml(text: str, doc: Document, problems: Problems) -> bool:
    """Parse YAML ``text`` into ``doc``, adding every problem found to ``problems``; whether the whole file was
    read (False: invalid YAML, an empty file, or reading stopped at a limit)."""
    from yaml.error import MarkedYAMLError, YAMLError  # lazy, as in _yaml_loader

    if _refused_characters(text, problems):
        return False
    loader = _yaml_loader()(text)
    try:
        reader = _YamlReader(loader, doc, problems)
        reader.read()
    except _StopReading:
        doc.data = None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        problems.add(line, column, (), f"invalid YAML: {what or exc}")
    except YAMLError as exc:  # one line, as every problem is (PyYAML's text spans two)
        problems.add(0, 0, (), f"invalid YAML: {' '.join(str(exc).split())}")
    else:
        return reader.documents > 0
    finally:
        loader.dispose()
    return False


class _StopReading(Exception):
    """Reading on is unsafe (nesting or aliases past a limit); the problem is already recorded."""


@dataclass(slots=True)
class _Item:
    """A value read in full, on its way into the list or mapping around it."""

    value: Any
    mark: Mark
    size: int = 1
    height: int = 0
    scalar: tuple[str, str] | None = None
    """A scalar's resolved tag and text: what a mapping key is made of."""
    tag: str | None = None
    """The tag written on a scalar (``!!str``, ``!custom``), refused wherever the scalar is used."""


@dataclass(slots=True)
class _Anchor:
    """What an alias copies: an anchored value, its size and height, and where its parts were written."""

    item: _Item
    base: int
    """Length of the anchored value's path: a position's path past it is relative to the value."""
    entries: range
    """The anchored value's positions among :attr:`_YamlReader.entries`."""


@dataclass(slots=True)
class _Open:
    """A list or mapping whose end has not been read yet."""

    item: _Item
    path: Path
    anchor: str | None
    first_entry: int
    muted: bool
    """Read but not part of the definition (a mapping key, or the value of a refused key): no positions or
    problems of its own are recorded."""
    key: str | None = None
    """In a mapping: the key whose value comes next (None when that key was refused)."""
    expects_key: bool = True


class _YamlReader:
    """Builds plain values from YAML events, recording positions, with aliases and nesting bounded.

    Each use of an alias is a copy of its anchor's value; copies count against :data:`MAX_ALIAS_VALUES`, so a
    file of nested aliases ("billion laughs") stops at the first alias past the limit. An alias can only copy
    a value read in full, so a value cannot contain itself.
    """

    def __init__(self, loader: Any, doc: Document, problems: Problems) -> None:
        self.loader = loader
        self.doc = doc
        self.problems = problems
        self.ignored = Problems(doc.file)
        """Where the problems of muted values go."""
        self.stack: list[_Open] = []
        self.anchors: dict[str, _Anchor] = {}
        self.open_anchors: dict[str, Mark] = {}
        self.entries: list[tuple[Path, Mark, bool, bool]] = []
        """Every recorded position in file order: path, mark, whether it is a key's, and whether it marks a value
        left out for its problem instead (:meth:`_leave_out`): an alias copies both kinds."""
        self.copied = 0
        self.documents = 0

    def read(self) -> None:
        from yaml import events  # lazy, as in _yaml_loader

        while not isinstance(event := self.loader.get_event(), events.StreamEndEvent | None):
            mark = (event.start_mark.line + 1, event.start_mark.column + 1)
            if isinstance(event, events.ScalarEvent):
                self._scalar(event, mark)
            elif isinstance(event, events.AliasEvent):
                self._alias(str(event.anchor), mark)
            elif isinstance(event, events.SequenceStartEvent | events.MappingStartEvent):
                self._open(event, mark, is_list=isinstance(event, events.SequenceStartEvent))
            elif isinstance(event, events.CollectionEndEvent):
                self._close()
            elif isinstance(event, events.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    self._stop(
                        mark, (), "invalid YAML: expected a single document in the stream but found another document"
                    )
        if not self.documents:
            self.problems.add(1, 1, (), "the file is empty; a definition starts with `flowledger: 1`")

    def _slot(self) -> tuple[Path, bool, bool]:
        """The path of the value that starts next, whether it is muted, and whether it is a mapping key."""
        if not self.stack:
            return (), False, False
        top = self.stack[-1]
        if isinstance(top.item.value, list):
            return (*top.path, len(top.item.value)), top.muted, False
        if top.expects_key:
            return top.path, True, True
        if top.key is None:
            return top.path, True, False
        return (*top.path, top.key), top.muted, False

    def _record(self, path: Path, mark: Mark, *, key: bool = False) -> None:
        (self.doc.keys if key else self.doc.values)[path] = mark
        self.entries.append((path, mark, key, False))

    def _leave_out(self, path: Path, mark: Mark) -> None:
        """Note that the value at ``path`` was left out for a problem already reported (or reported where its
        anchor was written): the validator says nothing of it, here or in any alias's copy of it."""
        self.problems.places.add(path)
        self.entries.append((path, mark, False, True))

    def _stop(self, mark: Mark, path: Path, message: str) -> None:
        self.problems.add(*mark, path, message)
        raise _StopReading

    def _define(self, name: str | None, mark: Mark, path: Path) -> None:
        if name is None:
            return
        first = self.open_anchors.get(name) or (self.anchors[name].item.mark if name in self.anchors else None)
        if first is not None:
            self.problems.add(
                *mark,
                path,
                f"the anchor `&{name}` is already defined at line {first[0]}; give each anchor its own name",
            )

    def _scalar(self, event: Any, mark: Mark) -> None:
        from yaml.nodes import ScalarNode  # lazy, as in _yaml_loader

        path, muted, is_key = self._slot()
        self._define(event.anchor, mark, path)
        text = str(event.value)
        written = None if event.tag is None else str(event.tag)
        scalar = (str(self.loader.resolve(ScalarNode, text, event.implicit)), text)
        item = _Item(None, mark, scalar=scalar, tag=written)
        if not is_key:
            if not muted:
                self._record(path, mark)
            if written is not None:
                (self.ignored if muted else self.problems).add(*mark, path, _tag_problem(written))
            else:
                item.value = _yaml_scalar(scalar, path, mark, self.ignored if muted else self.problems)
            if not muted and item.value is None and (written is not None or scalar[0] != _TAG_PREFIX + "null"):
                self._leave_out(path, mark)
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(item, len(path), range(0))
        self._place(item)

    def _alias(self, name: str, mark: Mark) -> None:
        path, muted, is_key = self._slot()
        anchor = self.anchors.get(name)
        if anchor is None:
            if name in self.open_anchors:
                message = (
                    f"the alias `*{name}` is inside the value of its own anchor `&{name}` "
                    f"(line {self.open_anchors[name][0]}), so that value would contain itself without end; "
                    "write the value out instead of a recursive alias"
                )
            else:
                message = f"the alias `*{name}` refers to no anchor; define `&{name}` before the alias uses it"
            (self.ignored if muted else self.problems).add(*mark, path, message)
            if not (muted or is_key):
                self._leave_out(path, mark)
            self._place(_Item(None, mark))
            return
        source = anchor.item
        if self.copied + source.size > MAX_ALIAS_VALUES:
            self._stop(
                mark,
                path,
                f"the alias `*{name}` would make aliases copy more than {MAX_ALIAS_VALUES:,} values into the "
                "definition (each use of an alias copies its anchor's whole value, the aliases inside it "
                "included); a definition needs far fewer, so write the values out or use fewer aliases",
            )
        if len(self.stack) + source.height > MAX_NESTING:
            self._stop(
                mark,
                path,
                f"the alias `*{name}` would nest lists and mappings more than {MAX_NESTING} levels deep; "
                "a definition needs far fewer, so flatten this value",
            )
        self.copied += source.size
        item = _Item(_copy(source.value), mark, source.size, source.height, source.scalar, source.tag)
        problems = self.ignored if muted else self.problems
        if not is_key and source.scalar is not None:  # a scalar is read again where its alias puts it
            if source.tag is not None:
                problems.add(*mark, path, _tag_problem(source.tag))
            else:
                item.value = _yaml_scalar(source.scalar, path, mark, problems)
        if not is_key and not muted:
            self._record(path, mark)
            if source.scalar is not None and item.value is None and source.scalar[0] != _TAG_PREFIX + "null":
                self._leave_out(path, mark)
            for at, where, key, left_out in self.entries[anchor.entries.start : anchor.entries.stop]:
                if left_out:
                    self._leave_out((*path, *at[anchor.base :]), where)
                else:
                    self._record((*path, *at[anchor.base :]), where, key=key)
        self._place(item)

    def _open(self, event: Any, mark: Mark, *, is_list: bool) -> None:
        path, muted, is_key = self._slot()
        if len(self.stack) >= MAX_NESTING:
            self._stop(mark, path, NESTED_TOO_DEEP)
        self._define(event.anchor, mark, path)
        if event.anchor is not None:
            self.open_anchors[event.anchor] = mark
        if not (muted or is_key):
            self._record(path, mark)
        if event.tag is not None:  # `!!set`, `!!omap`, `!!python/...`: they would change what the value is
            (self.ignored if muted else self.problems).add(*mark, path, _tag_problem(str(event.tag)))
        value: list[Any] | dict[str, Any] = [] if is_list else {}
        self.stack.append(_Open(_Item(value, mark, height=1), path, event.anchor, len(self.entries), muted or is_key))

    def _close(self) -> None:
        done = self.stack.pop()
        if done.anchor is not None:
            self.open_anchors.pop(done.anchor, None)
            self.anchors[done.anchor] = _Anchor(done.item, len(done.path), range(done.first_entry, len(self.entries)))
        self._place(done.item)

    def _place(self, item: _Item) -> None:
        """Put a value read in full into the list or mapping around it (or make it the document)."""
        if not self.stack:
            self.doc.data = item.value
            return
        top = self.stack[-1]
        if isinstance(top.item.value, list):
            top.item.value.append(item.value)
        elif top.expects_key:
            top.key = self._key(top, item)
            top.expects_key = False
            return
        else:
            top.expects_key = True
            if top.key is None:
                return
            top.item.value[top.key] = item.value
        top.item.size += item.size
        top.item.height = max(top.item.height, item.height + 1)

    def _key(self, mapping: _Open, item: _Item) -> str | None:
        """The key ``item`` makes in ``mapping``, or None (with a problem) when it cannot be one."""
        problems = self.ignored if mapping.muted else self.problems
        if item.scalar is None:
            problems.add(*item.mark, mapping.path, "a mapping key must be a plain string", key_of=True)
            return None
        if item.tag is not None:
            problems.add(*item.mark, mapping.path, _tag_problem(item.tag), key_of=True)
            return None
        tag, key = item.scalar
        if tag == _TAG_PREFIX + "merge" or key == "<<":
            problems.add(
                *item.mark, mapping.path, "YAML merge keys (<<) are not supported; write the keys out", key_of=True
            )
            return None
        if tag != _TAG_PREFIX + "str":  # `1:`, `null:`, `~:` and `true:` would silently become string keys
            kind = _KEY_KINDS.get(tag.removeprefix(_TAG_PREFIX), tag)
            problems.add(
                *item.mark,
                mapping.path,
                f"the key `{key}` is {kind} in YAML, not a string; "
                f"a mapping key must be a string, so quote it: '{key}'",
                key_of=True,
            )
            return None
        child = (*mapping.path, key)
        if key in mapping.item.value:
            first = self.doc.keys.get(child, (0, 0))
            problems.add(
                *item.mark, child, f"duplicate key `{shown_key(key)}` (first written at line {first[0]}); keep one"
            )
            return None
        if not mapping.muted:
            self._record(child, item.mark, key=True)
        return key


_KEY_KINDS: Final = {"int": "a number", "float": "a number", "null": "null", "bool": "a boolean"}
"""How a key that is not a string reads, by its resolved core-schema type."""


def _tag_problem(tag: str) -> str:
    """The problem of a tag written in the file: a definition holds JSON values, which need no tags."""
    shown = "!!" + tag.removeprefix(_TAG_PREFIX) if tag.startswith(_TAG_PREFIX) else tag
    return f"YAML tags (`{shown}`) are not supported: a definition holds JSON values; remove the tag"


def _copy(value: Any) -> Any:
    """A copy of plain values that shares no list or mapping with ``value``."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


_YAML_INT: Final = re.compile(r"[-+]?(0o[0-7]+|0x[0-9a-fA-F]+|[0-9]+)\Z")


def _yaml_scalar(scalar: tuple[str, str], path: Path, mark: Mark, problems: Problems) -> Any:
    tag, value = scalar
    kind = tag.removeprefix(_TAG_PREFIX)
    if kind == "str":
        return value
    if kind == "null":
        return None
    if kind == "bool":
        return value.lower() == "true"
    if kind == "int" and _YAML_INT.match(value):
        integer = read_integer(value)
        if isinstance(integer, str):
            problems.add(*mark, path, integer)
            return None
        return integer
    if kind == "float":
        try:
            number = float(value.replace("_", ""))
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            problems.add(*mark, path, f"`{value}` is not a finite number; only finite numbers are allowed")
            return None
        return number
    message = f"YAML values of type `{kind}` are not supported; quote `{value}` to make it a string"
    problems.add(*mark, path, message)
    return None
