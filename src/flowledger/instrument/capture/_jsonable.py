"""Arbitrary Python values as JSON values: converted, redacted, never raising on what they hold.

``convert`` (and ``to_jsonable``, its entry point) walks a value and builds
the JSON value to record. What has no JSON form as is becomes a marker
object ``{"__flowledger__": KIND, ...}``:

- ``repr``: a value of a type with no JSON form; ``type`` and a bounded ``repr`` (redacted as log text is).
- ``bytes``: ``length`` and the ``base64`` of the bytes.
- ``float``: a NaN or an infinity, which JSON cannot hold.
- ``int``: an integer outside the 64-bit range JSON tools share (orjson
  among them); ``value`` its decimal text (the leading digits and the
  exponent when it has more than ``MAX_REPR_CHARS``), ``digits`` how many.
- ``exception``: ``type`` and ``message`` (redacted as log text is) of an exception value.
- ``cycle`` / ``depth``: a container that contains itself, or nesting past ``MAX_DEPTH`` levels (the
  container that would hold the levels past it is replaced).

(``truncated`` and ``capture_error`` are the bounded capture's: see ``_bounded``.)

Lone surrogates (which have no UTF-8 form) in strings and keys become
U+FFFD, so a converted value always encodes. Mapping keys that look secret
(see ``_redaction``) keep the key and get the value ``"[REDACTED]"``, at
any depth.

A captured value nests arrays and objects at most ``MAX_DEPTH`` levels deep,
its markers included, on every path (the C encoders' too): the receiver
refuses an event nested past ``EVENT_MAX_DEPTH`` (its default limit), and a
captured value sits ``EVENT_ENVELOPE_DEPTH`` levels down in its event (the
event object, its ``data``). A record put inside a container of its own
before it goes into ``data`` (a generator's items, in a list) is captured
with ``nested`` set to those levels.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import datetime as dt
import enum
import json
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from types import SimpleNamespace
from typing import Any, Final

from flowledger._wire import MARKER_KEY, REDACTED
from flowledger.instrument._logs import redact_text
from flowledger.instrument.capture._redaction import is_secret

__all__ = [
    "EVENT_ENVELOPE_DEPTH",
    "EVENT_MAX_DEPTH",
    "INT_MAX",
    "INT_MIN",
    "MAX_DEPTH",
    "MAX_REPR_CHARS",
    "Budget",
    "Encoded",
    "big_int",
    "clean_str",
    "convert",
    "encode",
    "marker",
    "safe_str",
    "to_jsonable",
    "type_name",
]

EVENT_MAX_DEPTH: Final = 64
"""The nesting of arrays and objects the receiver takes in one event by default (``FLOWLEDGER_RECEIVER_MAX_DEPTH``;
``receiver._config.DEFAULT_MAX_DEPTH``, which the SDK does not import: a test ties the two)."""

EVENT_ENVELOPE_DEPTH: Final = 2
"""The levels above a captured value in its event: the event object and its ``data`` (``data.output``)."""

MAX_DEPTH: Final = EVENT_MAX_DEPTH - EVENT_ENVELOPE_DEPTH
"""The levels of arrays and objects a captured value may nest (a scalar has none), its markers included."""

MAX_REPR_CHARS: Final = 512

encode: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

_SCALARS: Final = (str, int, bool)

_INF: Final = float("inf")

INT_MIN: Final = -(2**63)

INT_MAX: Final = 2**64 - 1
"""The integers kept as JSON numbers: what orjson (the sender's encoder) and most JSON tools can hold."""

_SURROGATE: Final = re.compile("[\ud800-\udfff]")

_OBJECT_REPR: Final[Any] = object.__repr__


class Encoded(abc.ABC):
    """A value kept as its JSON encoding (``RawJSON``): converted again as its decoded value.

    Declared here so that the conversion can tell one apart without importing ``_raw_json``, which builds on it.
    """

    __slots__ = ()

    @abc.abstractmethod
    def value(self) -> Any:
        """The JSON value encoded."""


def marker(kind: str, **fields: Any) -> dict[str, Any]:
    return {MARKER_KEY: kind, **fields}


def type_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__


def to_jsonable(value: Any, redact: re.Pattern[str] | None = None) -> Any:
    """Convert ``value`` to a JSON-safe value, redacting secret-looking keys."""
    return convert(value, redact, 0, set())


class Budget:
    """How many more characters (and container items) a bounded conversion may produce."""

    __slots__ = ("cut", "left")

    def __init__(self, left: int) -> None:
        self.left = left
        self.cut = False
        """Whether anything was left out: when not, the conversion is whole and its size exact."""


def convert(
    value: Any, redact: re.Pattern[str] | None, depth: int, seen: set[int], budget: Budget | None = None
) -> Any:
    kind = type(value)
    if value is None or kind is bool:
        return value
    if kind is int:
        return value if INT_MIN <= value <= INT_MAX else big_int(value)
    if kind is str:
        if budget is not None:
            if len(value) > budget.left:
                value = value[: max(budget.left, 0)]
                budget.cut = True
            budget.left -= len(value) + 2
        return value if value.isascii() else clean_str(value)
    if isinstance(value, enum.Enum):
        return convert(value.value, redact, depth + 1, seen)
    if isinstance(value, _SCALARS):
        return _plain_scalar(value)
    if isinstance(value, float):
        if value != value or value in (_INF, -_INF):
            return marker("float", value=repr(value))
        return float(value)
    if depth >= MAX_DEPTH:  # below the last level: its container is cut (see below)
        return marker("depth", type=type_name(value))
    if isinstance(value, Mapping | list | tuple | set | frozenset) or dataclasses.is_dataclass(value):
        key = id(value)
        if key in seen:
            return marker("cycle", type=type_name(value))
        seen.add(key)
        try:
            converted = _container(value, redact, depth, seen, budget)
        finally:
            seen.discard(key)
        if depth == MAX_DEPTH - 1 and _nests(converted):  # the last level holds only scalars
            return marker("depth", type=type_name(value))
        return converted
    return _leaf(value, redact, depth, seen, budget)


def _nests(value: Any) -> bool:
    """Whether the converted container ``value`` holds an array or an object (a marker is one)."""
    items = value.values() if type(value) is dict else value
    return any(type(item) is dict or type(item) is list for item in items)


def _plain_scalar(value: Any) -> Any:
    # subclasses of str/int/bool (IntEnum handled above): keep the plain value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        plain = int(value)
        return plain if INT_MIN <= plain <= INT_MAX else big_int(plain)
    return clean_str(str.__str__(value))


def big_int(value: int) -> dict[str, Any]:
    """The ``int`` marker of an integer JSON tools cannot hold (see the module's docstring); never raises."""
    text = format(Decimal(value), f".{MAX_REPR_CHARS - 1}e")  # Decimal: no limit on the digits str() converts
    mantissa, _, exponent = text.partition("e")
    digits = int(exponent) + 1
    if digits <= MAX_REPR_CHARS:
        return marker("int", value=str(value), digits=digits)
    return marker("int", value=f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}", digits=digits)


def clean_str(value: str) -> str:
    """``value`` with each lone surrogate (no UTF-8 form) replaced by U+FFFD; ``value`` itself when it has none."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value


def _container(
    value: Any, redact: re.Pattern[str] | None, depth: int, seen: set[int], budget: Budget | None = None
) -> Any:
    fields = _named_fields(value)
    if fields is not None:  # dataclasses, named tuples, attrs classes: keep the names, check them
        return _container(fields, redact, depth, seen, budget)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if budget is not None:
                if budget.left <= 0:
                    budget.cut = True
                    break
                budget.left -= 4
            key = clean_str(k if isinstance(k, str) else _key_str(k))
            out[key] = REDACTED if is_secret(key, redact) else convert(v, redact, depth + 1, seen, budget)
        return out
    items: list[Any] = []
    for v in value:
        if budget is not None:
            if budget.left <= 0:
                budget.cut = True
                break
            budget.left -= 2
        items.append(convert(v, redact, depth + 1, seen, budget))
    if isinstance(value, set | frozenset):
        try:
            items.sort(key=encode)
        except (TypeError, ValueError):
            pass
    return items


def _named_fields(value: Any) -> dict[str, Any] | None:
    """The named fields of a record-like object, or None for plain containers."""
    if isinstance(value, Mapping | list | set | frozenset):
        return None
    if isinstance(value, tuple):
        as_dict = getattr(value, "_asdict", None)  # a named tuple
        return dict(as_dict()) if callable(as_dict) else None
    if isinstance(value, type) or not dataclasses.is_dataclass(value):
        return None
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _key_str(key: Any) -> str:
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    if isinstance(key, int) and not INT_MIN <= key <= INT_MAX:
        return str(big_int(int(key))["value"])
    if isinstance(key, int | float):
        return repr(key)
    return safe_str(key)


def _leaf(value: Any, redact: re.Pattern[str] | None, depth: int, seen: set[int], budget: Budget | None = None) -> Any:
    if isinstance(value, Encoded):  # converted again: it may nest past what is left of the levels
        return convert(value.value(), redact, depth, seen, budget)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = memoryview(value).cast("B")
        shown = raw if budget is None else raw[: max(budget.left * 3 // 4, 0)]
        if budget is not None:
            budget.cut = budget.cut or len(shown) < len(raw)
            budget.left -= len(shown) * 4 // 3 + 48
        return marker("bytes", length=len(raw), base64=base64.b64encode(shown).decode("ascii"))
    if isinstance(value, BaseException):
        message = redact_text(clean_str(safe_str(value)[:MAX_REPR_CHARS]), redact)  # as a recorded error is
        return marker("exception", type=type_name(value), message=message)
    dump = getattr(value, "model_dump", None)  # pydantic v2 models
    if callable(dump) and not isinstance(value, type):
        return convert(dump(mode="json"), redact, depth + 1, seen, budget)
    attrs_fields = getattr(type(value), "__attrs_attrs__", None)  # attrs classes
    if attrs_fields is not None:
        return convert({a.name: getattr(value, a.name) for a in attrs_fields}, redact, depth + 1, seen, budget)
    if type(value).__repr__ is _OBJECT_REPR and hasattr(value, "__dict__"):
        # a plain object (a SimpleNamespace has its own repr): its fields, with their names checked
        return convert(dict(vars(value)), redact, depth + 1, seen, budget)
    if isinstance(value, SimpleNamespace):
        return convert(dict(vars(value)), redact, depth + 1, seen, budget)
    # redacted as an exception's message is: a repr shows fields (``Creds(token='...')``) as ``key=value`` text
    return marker("repr", type=type_name(value), repr=redact_text(clean_str(repr(value)[:MAX_REPR_CHARS]), redact))


def safe_str(value: object) -> str:
    """``str(value)``, or a description of the failure when ``__str__`` raises."""
    try:
        return str(value)
    except Exception as exc:
        return f"<{type(value).__name__}: str() raised {type(exc).__name__}>"
