"""Turning arbitrary Python values into JSON-safe, redacted, bounded records.

``capture(value, policy)`` never raises. It returns the JSON value to record
and the size of its JSON encoding in bytes. What could not be kept as is
becomes a marker object ``{"__flowledger__": KIND, ...}``:

- ``truncated``: the encoding was longer than the limit; ``preview`` holds
  the first ``limit`` bytes of the JSON text, cut on a UTF-8 boundary.
  ``original_bytes`` and ``omitted_bytes`` say exactly how much was cut
  when the value was encoded whole. A value far over the limit is converted
  only as far as its preview needs, so its size is not known: its marker
  has ``original_bytes_at_least`` and ``omitted_bytes_at_least`` instead,
  true lower bounds (of the value's redacted encoding), never estimates.
- ``repr``: a value of a type with no JSON form; ``type`` and a bounded ``repr``.
- ``bytes``: ``length`` and the ``base64`` of the bytes.
- ``float``: a NaN or an infinity, which JSON cannot hold.
- ``int``: an integer outside the 64-bit range JSON tools share (orjson
  among them); ``value`` its decimal text (the leading digits and the
  exponent when it has more than ``MAX_REPR_CHARS``), ``digits`` how many.
- ``exception``: ``type`` and ``message`` (redacted as log text is) of an exception value.
- ``cycle`` / ``depth``: a container that contains itself, or nesting past ``MAX_DEPTH`` levels (the
  container that would hold the levels past it is replaced).
- ``capture_error``: converting the value raised; ``error`` says what.

Lone surrogates (which have no UTF-8 form) in strings and keys become
U+FFFD, so a captured value always encodes.

Mapping keys that look secret (see ``Settings.redact_patterns``) keep the key
and get the value ``"[REDACTED]"``, at any depth.

A captured value nests arrays and objects at most ``MAX_DEPTH`` levels deep,
its markers included, on every path (the C encoders' too): the receiver
refuses an event nested past ``EVENT_MAX_DEPTH`` (its default limit), and a
captured value sits ``EVENT_ENVELOPE_DEPTH`` levels down in its event (the
event object, its ``data``). A record put inside a container of its own
before it goes into ``data`` (a generator's items, in a list) is captured
with ``nested`` set to those levels.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import PurePath
from types import SimpleNamespace
from typing import Any, Final

import orjson

from flowledger._wire import MARKER_KEY, REDACTED
from flowledger.instrument._config import REDACT_FRAGMENTS
from flowledger.instrument._logs import redact_text

__all__ = [
    "EVENT_ENVELOPE_DEPTH",
    "EVENT_MAX_DEPTH",
    "MAX_DEPTH",
    "CapturePolicy",
    "RawJSON",
    "big_int",
    "capture",
    "clean_str",
    "materialize",
    "to_jsonable",
]

EVENT_MAX_DEPTH: Final = 64
"""The nesting of arrays and objects the receiver takes in one event by default (``FLOWLEDGER_RECEIVER_MAX_DEPTH``;
``receiver._config.DEFAULT_MAX_DEPTH``, which the SDK does not import: a test ties the two)."""
EVENT_ENVELOPE_DEPTH: Final = 2
"""The levels above a captured value in its event: the event object and its ``data`` (``data.output``)."""
MAX_DEPTH: Final = EVENT_MAX_DEPTH - EVENT_ENVELOPE_DEPTH
"""The levels of arrays and objects a captured value may nest (a scalar has none), its markers included."""
MAX_REPR_CHARS: Final = 512
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_SCALARS: Final = (str, int, bool)
_INF: Final = float("inf")
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1
"""The integers kept as JSON numbers: what orjson (the sender's encoder) and most JSON tools can hold."""
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_OBJECT_REPR: Final[Any] = object.__repr__


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    """How values are captured: the redaction pattern and the size limit."""

    redact: re.Pattern[str] | None
    limit_bytes: int
    verdicts: dict[str, bool] = field(init=False, repr=False, compare=False)
    """Per key seen: whether it looks secret (the cache the hot path reads; hashing a pattern is not free)."""
    plain_keys: set[str] = field(init=False, repr=False, compare=False)
    """The keys seen that do not look secret (a mapping whose keys all are needs no look at each)."""
    fragments: tuple[str, ...] | None = field(init=False, repr=False, compare=False)
    """The literal fragments ``redact`` alternates, when it was built from them."""

    def __post_init__(self) -> None:
        redact = self.redact
        object.__setattr__(self, "verdicts", {} if redact is None else _SECRET_KEYS.setdefault(redact, {}))
        object.__setattr__(self, "plain_keys", set() if redact is None else _PLAIN_KEYS.setdefault(redact, set()))
        object.__setattr__(self, "fragments", None if redact is None else REDACT_FRAGMENTS.get(redact))


def _marker(kind: str, **fields: Any) -> dict[str, Any]:
    return {MARKER_KEY: kind, **fields}


def _type_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__


_SIZED: Final = frozenset((str, bytes, list, dict, tuple))
"""The types whose length ``_oversized`` counts."""
_SECRET_KEYS: dict[re.Pattern[str], dict[str, bool]] = {}
_PLAIN_KEYS: dict[re.Pattern[str], set[str]] = {}
_SECRET_CACHE_MAX: Final = 8192


def _is_secret(key: str, redact: re.Pattern[str] | None) -> bool:
    if redact is None:
        return False
    known = _SECRET_KEYS.get(redact)
    if known is None:
        known = _SECRET_KEYS.setdefault(redact, {})
    found = known.get(key)
    if found is None:
        found = redact.search(key.lower().replace("-", "_")) is not None
        plain = _PLAIN_KEYS.setdefault(redact, set())
        if len(known) >= _SECRET_CACHE_MAX:
            known.clear()
            plain.clear()
        known[key] = found
        if not found:
            plain.add(key)
    return found


def to_jsonable(value: Any, redact: re.Pattern[str] | None = None) -> Any:
    """Convert ``value`` to a JSON-safe value, redacting secret-looking keys."""
    return _convert(value, redact, 0, set())


class _Budget:
    """How many more characters (and container items) a bounded conversion may produce."""

    __slots__ = ("cut", "left")

    def __init__(self, left: int) -> None:
        self.left = left
        self.cut = False
        """Whether anything was left out: when not, the conversion is whole and its size exact."""


def _convert(
    value: Any, redact: re.Pattern[str] | None, depth: int, seen: set[int], budget: _Budget | None = None
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
        return value if value.isascii() else _clean_str(value)
    if isinstance(value, enum.Enum):
        return _convert(value.value, redact, depth + 1, seen)
    if isinstance(value, _SCALARS):
        return _plain_scalar(value)
    if isinstance(value, float):
        if value != value or value in (_INF, -_INF):
            return _marker("float", value=repr(value))
        return float(value)
    if depth >= MAX_DEPTH:  # below the last level: its container is cut (see below)
        return _marker("depth", type=_type_name(value))
    if isinstance(value, Mapping | list | tuple | set | frozenset) or dataclasses.is_dataclass(value):
        key = id(value)
        if key in seen:
            return _marker("cycle", type=_type_name(value))
        seen.add(key)
        try:
            converted = _container(value, redact, depth, seen, budget)
        finally:
            seen.discard(key)
        if depth == MAX_DEPTH - 1 and _nests(converted):  # the last level holds only scalars
            return _marker("depth", type=_type_name(value))
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
    return _clean_str(str.__str__(value))


def big_int(value: int) -> dict[str, Any]:
    """The ``int`` marker of an integer JSON tools cannot hold (see the module's docstring); never raises."""
    text = format(Decimal(value), f".{MAX_REPR_CHARS - 1}e")  # Decimal: no limit on the digits str() converts
    mantissa, _, exponent = text.partition("e")
    digits = int(exponent) + 1
    if digits <= MAX_REPR_CHARS:
        return _marker("int", value=str(value), digits=digits)
    return _marker("int", value=f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}", digits=digits)


def clean_str(value: str) -> str:
    """``value`` with each lone surrogate (no UTF-8 form) replaced by U+FFFD; ``value`` itself when it has none."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value


_clean_str = clean_str


def _container(
    value: Any, redact: re.Pattern[str] | None, depth: int, seen: set[int], budget: _Budget | None = None
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
            key = _clean_str(k if isinstance(k, str) else _key_str(k))
            out[key] = REDACTED if _is_secret(key, redact) else _convert(v, redact, depth + 1, seen, budget)
        return out
    items: list[Any] = []
    for v in value:
        if budget is not None:
            if budget.left <= 0:
                budget.cut = True
                break
            budget.left -= 2
        items.append(_convert(v, redact, depth + 1, seen, budget))
    if isinstance(value, set | frozenset):
        try:
            items.sort(key=_encode)
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


def _leaf(value: Any, redact: re.Pattern[str] | None, depth: int, seen: set[int], budget: _Budget | None = None) -> Any:
    if isinstance(value, RawJSON):  # converted again: it may nest past what is left of the levels
        return _convert(value.value(), redact, depth, seen, budget)
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
        return _marker("bytes", length=len(raw), base64=base64.b64encode(shown).decode("ascii"))
    if isinstance(value, BaseException):
        message = redact_text(_clean_str(safe_str(value)[:MAX_REPR_CHARS]), redact)  # as a recorded error is
        return _marker("exception", type=_type_name(value), message=message)
    dump = getattr(value, "model_dump", None)  # pydantic v2 models
    if callable(dump) and not isinstance(value, type):
        return _convert(dump(mode="json"), redact, depth + 1, seen, budget)
    attrs_fields = getattr(type(value), "__attrs_attrs__", None)  # attrs classes
    if attrs_fields is not None:
        return _convert({a.name: getattr(value, a.name) for a in attrs_fields}, redact, depth + 1, seen, budget)
    if type(value).__repr__ is _OBJECT_REPR and hasattr(value, "__dict__"):
        # a plain object (a SimpleNamespace has its own repr): its fields, with their names checked
        return _convert(dict(vars(value)), redact, depth + 1, seen, budget)
    if isinstance(value, SimpleNamespace):
        return _convert(dict(vars(value)), redact, depth + 1, seen, budget)
    return _marker("repr", type=_type_name(value), repr=_clean_str(repr(value)[:MAX_REPR_CHARS]))


def safe_str(value: object) -> str:
    """``str(value)``, or a description of the failure when ``__str__`` raises."""
    try:
        return str(value)
    except Exception as exc:
        return f"<{type(value).__name__}: str() raised {type(exc).__name__}>"


class RawJSON:
    """A captured payload kept as the JSON it was encoded to (UTF-8 bytes, or text).

    Encoding is the snapshot: later changes to the value cannot reach the
    record. Everything else waits until someone needs the payload, usually
    the sender's worker thread, so the workflow's hot path pays for one
    C-level encode: decoding, and the search for a secret-looking key
    deeper in (``probe``: with ``hidden``, the top-level keys already
    redacted before encoding), and if one may be there, redaction; and the
    check that the JSON nests at most ``levels`` deep (``MAX_DEPTH``, less
    what the record is put inside), and if it does not, the cut.

    Several threads may read one record at once (each sink's worker writes
    the same event): the first read settles it under a lock (the cut, the
    probe) into one immutable view, the JSON and the pattern its decoding
    still needs, and every reader works from the view it took, never from
    fields another thread may be changing.
    """

    __slots__ = ("_data", "_hidden", "_levels", "_probe", "_redact", "_view")

    def __init__(
        self,
        text: str | bytes,
        redact: re.Pattern[str] | None = None,
        *,
        probe: bool = False,
        hidden: tuple[str, ...] = (),
        levels: int = MAX_DEPTH,
    ) -> None:
        self._data = text
        """The JSON as encoded until the record is settled, then as settled (cut, and redacted once ``json`` ran)."""
        self._redact = redact
        self._probe = probe and redact is not None
        self._hidden = hidden
        self._levels = levels
        """The nesting the JSON may have (it is cut to it when first read)."""
        self._view: tuple[bytes | str, re.Pattern[str] | None] | None = None
        """Once settled: the JSON, and the pattern decoding it must redact with (None when nothing secret is left)."""

    @property
    def text(self) -> str:
        """The JSON text as kept: top-level secrets redacted; once read, cut to ``levels`` (deeper secrets redacted
        once ``json`` ran)."""
        return _as_text(self._data)

    @property
    def nbytes(self) -> int:
        """The size of the JSON in bytes (as encoded until first read; a cut to ``levels`` only shortens it)."""
        data = self._data
        return len(data) if isinstance(data, bytes) else len(data.encode("utf-8"))

    def within(self, levels: int) -> RawJSON:
        """This record, or one of its JSON cut to nest at most ``levels`` deep when that is less than its own limit."""
        return self if self._levels <= levels else RawJSON(self.raw(), levels=levels)

    def _settled(self) -> tuple[bytes | str, re.Pattern[str] | None]:
        """The record's view (see the class's docstring), settled now by the first reader."""
        view = self._view
        if view is None:
            with _settling:
                view = self._view
                if view is None:
                    view = self._settle()
        return view

    def _settle(self) -> tuple[bytes | str, re.Pattern[str] | None]:
        """Cut the JSON when it nests past ``levels`` (redacting it on the way), else probe it; publish the view.

        Called with ``_settling`` held, once: the fields it reads change nowhere else before the view is set.
        """
        data, redact = self._data, self._redact
        encoded = data if isinstance(data, bytes) else data.encode("utf-8")
        if _too_deep(encoded, self._levels):  # the probe is skipped: redacting whatever it would find is the same
            plain = _redacting_decoder(redact)(_as_text(data)) if redact is not None else _orjson_loads(encoded)
            data, redact = _encode(_convert(plain, None, MAX_DEPTH - self._levels, set())), None
        elif (
            redact is not None
            and self._probe
            and not _mentions(_probe_text(_as_text(data), self._hidden), redact, _fragments(redact))
        ):
            redact = None
        view = (data, redact)
        self._data, self._redact, self._probe = data, redact, False
        self._view = view  # last: a reader that takes the view without the lock gets it whole
        return view

    def value(self) -> Any:
        """The payload as a JSON value, redacted."""
        data, redact = self._settled()
        if redact is not None:
            return _redacting_decoder(redact)(_as_text(data))
        return _orjson_loads(data) if isinstance(data, bytes) else _decode(data)

    def json(self) -> str:
        """The payload as JSON text, redacted."""
        data, redact = self._settled()
        if redact is not None:
            text = _encode(self.value())  # redacted now, and final (a reader at the same time makes the same)
            self._data = text
            self._view = (text, None)
            return text
        return _as_text(data)

    def raw(self) -> bytes | str:
        """The payload's JSON, redacted, as it is kept (bytes when encoded so): what an encoder splices in."""
        data, redact = self._settled()
        return data if redact is None else self.json()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJSON) and self.json() == other.json()

    def __hash__(self) -> int:
        return hash(self.json())

    def __repr__(self) -> str:
        return f"RawJSON({self.json()[:80]!r})"


def _as_text(data: bytes | str) -> str:
    """JSON kept as UTF-8 bytes or as text, as text."""
    return data.decode("utf-8") if isinstance(data, bytes) else data


_settling = threading.Lock()
"""Held while a record is settled (its first read): once per record, so two sinks' workers rarely meet on it."""


def _after_fork_in_child() -> None:
    global _settling
    _settling = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def materialize(event: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``event`` whose captured payloads are plain JSON values."""
    out = dict(event)
    data = out.get("data")
    if isinstance(data, dict) and any(type(v) is RawJSON for v in data.values()):
        out["data"] = {k: (v.value() if type(v) is RawJSON else v) for k, v in data.items()}
    return out


class _NotPlainJSON(Exception):
    """Raised by the fast encoder on a value it cannot encode as is."""


def _refuse(value: Any) -> Any:
    raise _NotPlainJSON


_fast_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_refuse, check_circular=True
).encode
_orjson_dumps: Final = orjson.dumps
_orjson_loads: Final = orjson.loads
_PLAIN_ONLY: Final = (
    orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
)
"""Dataclasses, datetimes and subclasses of str/int/dict/list go to ``default`` (refused), as with ``json``."""


_AS_BRACKETS: Final = bytes.maketrans(b"{}", b"[]")
_NOT_SHAPE: Final = bytes(b for b in range(256) if b not in b'[]{}"')


def _too_deep(encoded: bytes, levels: int) -> bool:
    """Whether the JSON text ``encoded`` nests arrays and objects more than ``levels`` deep.

    C-level passes only: the size and the count of opening brackets rule out
    almost every payload (it cannot nest deeper than it has). Otherwise its
    shape is kept, brackets and the quotes around strings (escaped ones
    dropped), strings with no bracket in them go (two quotes in a row, empty
    or merged strings), then what is still between quotes, and each pass
    removes the innermost pairs of brackets: one level a pass.
    """
    if len(encoded) <= 2 * levels or encoded.count(b"[") + encoded.count(b"{") <= levels:
        return False
    if b"\\" in encoded:
        encoded = encoded.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = encoded.translate(_AS_BRACKETS, _NOT_SHAPE).replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    for _ in range(levels):
        if not shape:
            return False
        shape = shape.replace(b"[]", b"")
    return bool(shape)


def _fast(value: Any, policy: CapturePolicy, levels: int = MAX_DEPTH) -> tuple[RawJSON, int] | None:
    """Plain JSON values take a C encoder: a snapshot in microseconds.

    Secret-looking keys at the top of a mapping are redacted here, before
    encoding (a few cached lookups). Whether a secret-looking key is left
    deeper in is found out later, off the hot path, by whoever first needs
    the payload (:class:`RawJSON`): when none is, the record is final as
    encoded and nobody decodes it; otherwise it is redacted when decoded.

    orjson (about five times faster than ``json`` here) refuses what the full
    conversion must see (other types, lone surrogates, integers past 64 bits,
    cycles, non-string keys) but writes NaN and infinities as ``null``: a
    text holding ``null`` is encoded again by ``json``, which refuses those.

    Nesting is not looked at here: the record checks it against ``levels``
    when first read, off the hot path, and cuts what is deeper then.

    Returns the record and its size in bytes (the size before such a cut),
    or None when the value needs the full conversion (non-JSON types, NaN,
    cycles, lone surrogates, odd keys).
    """
    redact = policy.redact
    hidden: tuple[str, ...] = ()
    if redact is not None and type(value) is dict and not value.keys() <= policy.plain_keys:
        verdicts = policy.verdicts
        for key in value:
            secret = verdicts.get(key)
            if secret is None:
                secret = type(key) is str and _is_secret(key, redact)
            if secret:
                hidden += (key,)
        if hidden:
            value = dict(value)  # the caller's mapping is left as it is
            for key in hidden:
                value[key] = REDACTED
    try:
        encoded = _orjson_dumps(value, default=_refuse, option=_PLAIN_ONLY)
        # find(): cheaper than ``in`` on bytes. orjson (3.12 on) returns its whole 4 KiB buffer, never shrunk:
        # a snapshot kept until the worker writes the event would hold that much memory per payload, so it keeps
        # a copy of the right size.
        has_null = encoded.find(b"null") != -1
        encoded = _fast_encode(value).encode("utf-8") if has_null else bytes(memoryview(encoded))
    except (_NotPlainJSON, ValueError, TypeError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        return None
    if redact is None:
        return RawJSON(encoded, levels=levels), len(encoded)
    return RawJSON(encoded, redact, probe=True, hidden=hidden, levels=levels), len(encoded)


def _probe_text(text: str, hidden: tuple[str, ...]) -> str:
    """``text`` lowercased, ``-`` as ``_``, without the pairs redacted before encoding (they no longer count)."""
    probe = text.lower().replace("-", "_")
    for key in hidden:
        pair = _REDACTED_PAIRS.get(key)
        if pair is None:
            pair = _REDACTED_PAIRS[key] = f"{_encode(key)}:{_REDACTED_JSON}".lower().replace("-", "_")
            if len(_REDACTED_PAIRS) > _SECRET_CACHE_MAX:
                _REDACTED_PAIRS.clear()
        probe = probe.replace(pair, "")
    return probe


def _fragments(redact: re.Pattern[str]) -> tuple[str, ...] | None:
    """The literal fragments ``redact`` alternates, when it was built from them."""
    return REDACT_FRAGMENTS.get(redact)


def _mentions(probe: str, redact: re.Pattern[str], fragments: tuple[str, ...] | None) -> bool:
    """Whether lowercased ``probe`` contains a fragment of ``redact``."""
    if fragments is None:
        return redact.search(probe) is not None
    for fragment in fragments:  # noqa: SIM110 - a loop: half the cost of any() over a generator
        if fragment in probe:
            return True
    return False


_REDACTED_JSON: Final = json.dumps(REDACTED)
_REDACTED_PAIRS: dict[str, str] = {}
"""Per secret key, its redacted ``"key":"[REDACTED]"`` pair as it appears in a probe."""


_decode = json.JSONDecoder().decode
_DECODERS: dict[re.Pattern[str], Callable[[str], Any]] = {}


def _redacting_decoder(redact: re.Pattern[str]) -> Callable[[str], Any]:
    """A JSON decoder that redacts secret-looking keys of every object it builds."""
    decoder = _DECODERS.get(redact)
    if decoder is None:
        known = _SECRET_KEYS.setdefault(redact, {})

        def hide(obj: dict[str, Any]) -> dict[str, Any]:
            for key in obj:  # keys repeat: most are one dict lookup in the verdict cache
                secret = known.get(key)
                if secret is None:
                    secret = _is_secret(key, redact)
                if secret:
                    obj[key] = REDACTED
            return obj

        decoder = _DECODERS[redact] = json.JSONDecoder(object_hook=hide).decode
    return decoder


def _oversized(value: Any, limit: int, redact: re.Pattern[str] | None) -> int:
    """A cheap lower bound of the JSON size of ``value`` (redacted) when it is surely over ``limit``, else 0.

    Looks at the value and one level inside it (lengths only), so a huge
    payload is recognised without walking or encoding all of it. The value
    of a secret-looking key does not count: it is recorded as ``[REDACTED]``.
    """
    kind = type(value)
    if kind is str or kind is bytes:
        return len(value) if len(value) > limit else 0
    if kind is dict or kind is list or kind is tuple:
        total = len(value)
        if total * 2 > limit:
            return total * 2
        for item in value.values() if kind is dict else value:
            if type(item) in _SIZED:
                total += len(item)
                if total > limit:
                    # Rarely reached: count again without the values redaction will replace.
                    return _oversized_redacted(value, limit, redact) if kind is dict and redact else total
    return 0


def _oversized_redacted(value: dict[Any, Any], limit: int, redact: re.Pattern[str]) -> int:
    total = len(value)
    for key, item in value.items():
        if type(key) is str and _is_secret(key, redact):
            continue
        inner = type(item)
        if inner is str or inner is bytes or inner is list or inner is dict or inner is tuple:
            total += len(item)
            if total > limit:
                return total
    return 0


def capture(value: Any, policy: CapturePolicy, *, nested: int = 0) -> tuple[Any, int]:
    """Return ``(record, encoded_size_bytes)`` for ``value``; never raises.

    The record is a snapshot: later changes to ``value`` do not reach it.
    It is a JSON value, or a :class:`RawJSON` holding the encoded text. A
    payload far over the limit is converted only as far as its preview needs,
    so capture costs about the same for a huge value as for a 4 KiB one.
    The record nests at most ``MAX_DEPTH - nested`` levels: ``nested`` is how
    many levels the caller puts around it inside the event's ``data``.
    """
    levels = MAX_DEPTH - nested
    try:
        kind = type(value)
        if value is None or kind is bool or (kind is int and INT_MIN <= value <= INT_MAX):
            return value, 5
        if kind is RawJSON:
            return value.within(levels), value.nbytes
        at_least = _oversized(value, policy.limit_bytes, policy.redact)
        if at_least:
            return _preview(value, policy, at_least, nested)
        fast = _fast(value, policy, levels)
        if fast is not None:
            if fast[1] <= policy.limit_bytes:
                return fast
            text = fast[0].json()  # the preview must be the redacted text (and cut to its levels)
            size = len(text.encode("utf-8"))
            if size <= policy.limit_bytes:
                return fast[0], size
            return _cut(text, size, policy.limit_bytes), policy.limit_bytes + 96
        jsonable: Any = _convert(value, policy.redact, nested, set())
        text = _encode(jsonable)
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
    except Exception as exc:  # a __repr__, model_dump or property that raises
        marker = _marker("capture_error", type=_type_name(value), error=_clean_str(f"{type(exc).__name__}: {exc}"))
        return marker, 128
    if size <= policy.limit_bytes:
        return jsonable, size
    return _cut(text, size, policy.limit_bytes), policy.limit_bytes + 96


def _cut(text: str, size: int, limit: int, *, exact: bool = True) -> dict[str, Any]:
    """The ``truncated`` marker: exact sizes, or (``exact=False``) lower bounds named ``*_at_least``."""
    head = text.encode("utf-8")[:limit]
    preview = head.decode("utf-8", "ignore")
    kept = len(preview.encode("utf-8"))
    if exact:
        return _marker("truncated", preview=preview, original_bytes=size, omitted_bytes=max(size - kept, 0))
    return _marker(
        "truncated", preview=preview, original_bytes_at_least=size, omitted_bytes_at_least=max(size - kept, 0)
    )


def _preview(value: Any, policy: CapturePolicy, at_least: int, nested: int = 0) -> tuple[Any, int]:
    """The record of a value that looked huge, converting only what the preview shows.

    When the bounded conversion left nothing out (redaction shrank the value,
    say), it is the whole value: kept as is if it fits, else cut with its
    exact size. Otherwise the size is known only from below.
    """
    budget = _Budget(policy.limit_bytes)
    partial = _convert(value, policy.redact, nested, set(), budget)
    text = _encode(partial)
    size = len(text.encode("utf-8"))
    if not budget.cut:
        if size <= policy.limit_bytes:
            return partial, size
        return _cut(text, size, policy.limit_bytes), policy.limit_bytes + 96
    return _cut(text, max(at_least, size), policy.limit_bytes, exact=False), policy.limit_bytes + 96
