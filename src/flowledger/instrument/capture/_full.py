"""Full capture: a node's complete output, content-addressed, for resuming and comparing runs.

With ``capture="full"`` (a definition's ``capture: full``, or ``capture=`` of
:func:`flowledger.run` and :func:`flowledger.node`), ``node_finished`` carries,
besides the usual 4 KiB preview in ``output``:

- ``output_sha256``: the sha256 of the output's JSON text (UTF-8, keys in
  the order the value has them, no spaces), after redaction;
- ``output_capture``: an :class:`~flowledger._wire.OutputCapture` saying
  whether that text is the real output (``full``) or not (``redacted``,
  ``unrepresentable``, ``too_large``);
- ``output_full``: the JSON text itself, unless it is over
  :data:`~flowledger._wire.FULL_CAPTURE_MAX_BYTES`.

The receiver keeps the text in a blob table keyed by its hash, apart from
the ledger, whose entry commits to the hash. A run's trigger data is
captured the same way (``trigger_data_sha256``, ``trigger_data_capture``,
``trigger_data_full``) so that a resume can start again from the first node.

A value is encoded as it is walked, a piece at a time: the hash is fed
64 KiB of text at a time and the text is kept only while it is within the
cap, so a value over it costs one pass and about the memory of the cap,
not copies of the value (its hash is still that of its whole JSON text).
Containers of plain JSON values (checked by orjson, encoded by ``json``'s C
encoder, the same bytes as converting then encoding) go a batch at a time;
anything else is converted by ``to_jsonable``'s own code, that part alone.
The text, its hash and ``capture`` are what converting the whole value with
``to_jsonable`` and encoding it would give.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from reprlib import repr as _q  # quoted, and cut short: a message never carries a whole value
from typing import Any, Final

import orjson

from flowledger._exceptions import UsageError
from flowledger._wire import FULL_CAPTURE_MAX_BYTES, MARKER_KEY, REDACTED, CaptureMode, OutputCapture
from flowledger.instrument.capture._bounded import CapturePolicy
from flowledger.instrument.capture._jsonable import MAX_DEPTH, clean_str, convert, encode
from flowledger.instrument.capture._plain_json import PLAIN_ONLY, NotPlainJSON, fast_encode, refuse, too_deep
from flowledger.instrument.capture._redaction import fragments_of, is_secret, mentions

__all__ = ["capture_mode", "full_capture"]

_orjson_dumps: Final = orjson.dumps
_REDACTED_JSON: Final = encode(REDACTED)
_MARKER_JSON: Final = encode(MARKER_KEY)
HASH_CHUNK_CHARS: Final = 64 * 1024
"""The text gathered before it is encoded to UTF-8 and fed to the hash."""
BATCH_WEIGHT: Final = 64 * 1024
"""At most about this much (lengths of strings and containers) goes to the C encoders at once."""
PLAIN_MAX_BYTES: Final = 16 * BATCH_WEIGHT
"""A batch whose encoding is longer (heavy further down than ``_light`` looks) is walked instead."""
STRING_SLICE_CHARS: Final = 256 * 1024
"""A longer string is escaped this many characters at a time."""
_FIRST_BATCH: Final = 8
_MAX_BATCH: Final = 4096
_UNSAFE_IN_FRAGMENT: Final = frozenset('"\\\u03c3\u03c2') | frozenset(chr(c) for c in range(0x20))
"""Characters that make a fragment's absence from a JSON text prove nothing: JSON escapes them, or
(sigma) their lowercase depends on what follows."""


def capture_mode(value: CaptureMode | str | None) -> CaptureMode | None:
    """``value`` as a CaptureMode (None stays None); UsageError naming the choices otherwise."""
    if value is None or isinstance(value, CaptureMode):
        return value
    try:
        return CaptureMode(value)
    except ValueError:
        choices = ", ".join(m.value for m in CaptureMode)
        raise UsageError(f"capture must be one of {choices}, not {_q(value)}") from None


def _has_marker(value: Any) -> bool:
    if isinstance(value, dict):
        return MARKER_KEY in value or any(_has_marker(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_marker(v) for v in value)
    return False


def _light(items: Iterable[Any], limit: int) -> bool:
    """Whether ``items``, with the lengths of the strings and containers among them, add up to at most ``limit``.

    A look one level deep, stopping once past ``limit``: what is heavy further down shows in the size of
    its encoding (``PLAIN_MAX_BYTES``).
    """
    total = 0
    for item in items:
        kind = type(item)
        total += len(item) if kind is str or kind is dict or kind is list or kind is tuple or kind is bytes else 1
        if total > limit:
            return False
    return True


def _weighed(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> Iterable[Any]:
    """What ``_light`` weighs of a container: a list's items, a dict's keys and values."""
    return chain.from_iterable(value.items()) if type(value) is dict else value


class _Stream:
    """The JSON text of a value, made as it is walked: hashed as it goes, kept while within the cap."""

    __slots__ = (
        "hash",
        "kept",
        "last_bytes",
        "limit",
        "marker",
        "nbytes",
        "pending",
        "pending_chars",
        "plain_ok",
        "redact",
        "redacted",
        "seen",
        "small",
        "unredacted_failed",
    )

    def __init__(self, redact: re.Pattern[str] | None, limit: int) -> None:
        self.redact = redact
        self.limit = limit
        self.hash = hashlib.sha256()
        self.nbytes = 0
        self.kept: list[str] | None = []
        """The text so far, while it is within ``limit``; None past it."""
        self.pending: list[str] = []
        self.pending_chars = 0
        self.seen: set[int] = set()
        self.last_bytes = 0
        """The size of the encoding ``plain`` last made (0 when the value is not plain JSON)."""
        self.small = False
        """Whether what ``plain`` last turned down is plain JSON whose encoding is at most ``BATCH_WEIGHT`` bytes:
        converted whole (as ``convert`` does) at little cost, rather than walked."""
        self.marker = False
        """Whether the converted value holds a ``__flowledger__`` key (a marker, or the value's own)."""
        self.redacted = False
        """Whether converting without redaction gives something else."""
        self.unredacted_failed = False
        """Whether converting without redaction raised (where redaction kept the conversion from going)."""
        fragments = fragments_of(redact) if redact is not None else ()
        self.plain_ok = fragments is not None and not any(_UNSAFE_IN_FRAGMENT.intersection(f) for f in fragments)
        """Whether a secret-looking key can be ruled out from the JSON text (redact is None, or made of fragments)."""

    # --- the text ----------------------------------------------------------

    def write(self, text: str) -> None:
        self.pending.append(text)
        self.pending_chars += len(text)
        if self.pending_chars >= HASH_CHUNK_CHARS:
            self.flush()

    def flush(self) -> None:
        text = "".join(self.pending)
        self.pending.clear()
        self.pending_chars = 0
        raw = text.encode("utf-8")
        self.hash.update(raw)
        self.nbytes += len(raw)
        if self.kept is not None:
            if self.nbytes > self.limit:
                self.kept = None
            else:
                self.kept.append(text)

    # --- the walk (mirrors _jsonable.convert, which makes whatever is not walked here) --------------

    def value(self, value: Any, depth: int, *, tried: bool = False) -> None:
        """Write ``value`` at ``depth``; ``tried``: it is known not to go whole (do not try it again)."""
        kind = type(value)
        if kind is str:
            self.string(value)
        elif kind is int or kind is float or kind is bool or value is None:  # redaction plays no part
            jsonable = convert(value, None, depth, self.seen)
            if type(jsonable) is dict:  # an integer past 64 bits, a NaN or an infinity
                self.marker = True
            self.write(encode(jsonable))
        elif (kind is dict or kind is list or kind is tuple) and depth < MAX_DEPTH - 1 and id(value) not in self.seen:
            if kind is dict and not self.plain_keys(value):
                self.write(self.converted(value, depth))
                return
            if not tried and _light(_weighed(value), BATCH_WEIGHT):
                text = self.plain(value, depth)
                if text is not None:
                    self.write(text)
                    return
                if self.small:  # a secret, a marker key, a NaN or too deep, in little: as convert makes it
                    self.write(self.converted(value, depth))
                    return
            self.container(value, depth)
        else:
            self.write(self.converted(value, depth))

    def string(self, value: str) -> None:
        if len(value) <= STRING_SLICE_CHARS:
            self.write(encode(value if value.isascii() else clean_str(value)))
            return
        self.write('"')  # escaping and cleaning go a character at a time: slices give the same text
        for at in range(0, len(value), STRING_SLICE_CHARS):
            part = value[at : at + STRING_SLICE_CHARS]
            self.write(encode(part if part.isascii() else clean_str(part))[1:-1])
        self.write('"')

    @staticmethod
    def plain_keys(value: dict[Any, Any]) -> bool:
        """Whether every key is a str kept as is (so no two keys become one): else it is converted whole."""
        return all(type(key) is str and (key.isascii() or clean_str(key) is key) for key in value)

    def converted(self, value: Any, depth: int) -> str:
        """The JSON text of ``value`` as ``convert`` makes it (at ``depth``, within the walk's containers), whole."""
        jsonable = convert(value, self.redact, depth, self.seen)
        if not self.marker and _has_marker(jsonable):
            self.marker = True
        if self.redact is not None:
            self.compare(jsonable, value, depth)
        text: str = encode(jsonable)
        return text

    def compare(self, jsonable: Any, value: Any, depth: int) -> None:
        """Note whether ``value`` converted without redaction differs from ``jsonable`` (or cannot be converted)."""
        try:
            plain = convert(value, None, depth, self.seen)
        except Exception:
            self.unredacted_failed = True
            return
        if not self.redacted and plain != jsonable:
            self.redacted = True

    def plain(self, value: dict[str, Any] | list[Any] | tuple[Any, ...], depth: int) -> str | None:
        """The JSON text of ``value`` at ``depth`` when converting would leave it as it is; else None."""
        self.small = False
        self.last_bytes = 0
        if not self.plain_ok:
            return None
        try:
            encoded = _orjson_dumps(value, default=refuse, option=PLAIN_ONLY)
            self.last_bytes = len(encoded)
            self.small = len(encoded) <= BATCH_WEIGHT
            if len(encoded) > PLAIN_MAX_BYTES:
                return None
            text: str = fast_encode(value)  # json's own text: the same bytes as converting, then encoding
            if encoded != text.encode() and orjson.loads(encoded) != json.loads(text):
                # not the same values, only written apart (floats): an enum member of a str or int mixin, whose
                # value orjson writes and json its content; converting writes its value
                return None
        except (NotPlainJSON, ValueError, TypeError, RecursionError):  # orjson.JSONEncodeError is a TypeError
            return None
        if _MARKER_JSON in text or too_deep(encoded, MAX_DEPTH - depth):
            return None
        redact = self.redact
        if redact is not None and mentions(text.lower().replace("-", "_"), redact, fragments_of(redact)):
            return None
        return text

    def container(self, value: dict[str, Any] | list[Any] | tuple[Any, ...], depth: int) -> None:
        """A dict, list or tuple walked a batch of items at a time: a batch whole when it is plain, else item by item.

        A batch grows while batches go whole, and starts again at one item after one that does not.
        """
        self.seen.add(id(value))
        try:
            pairs: Iterator[tuple[str, Any]] | None = None
            items: list[Any] | tuple[Any, ...] = ()
            if isinstance(value, dict):  # exactly a dict (see value)
                pairs = iter(value.items())
                if MARKER_KEY in value:
                    self.marker = True
            else:
                items = value
            is_dict = pairs is not None
            self.write("{" if is_dict else "[")
            comma = ""
            size = _FIRST_BATCH
            at = 0
            while True:
                # a list either way: a tuple's slice of all of it is the tuple itself, which is in ``seen``
                batch: Any = list(islice(pairs, size)) if pairs is not None else list(items[at : at + size])
                if not batch:
                    break
                at += len(batch)
                light = _light(chain.from_iterable(batch) if pairs is not None else batch, BATCH_WEIGHT)
                part = dict(batch) if pairs is not None else batch
                text = self.plain(part, depth) if light else None
                if text is None and light and self.small:
                    # plain but for a secret, a marker key, a NaN or its depth, and little: as convert makes it
                    text = self.converted(part, depth)
                if text is not None:
                    assert text[:1] in "[{", "a batch's text is its container's"
                    assert text[-1:] in "]}", "a batch's text is its container's"
                    self.write(comma + text[1:-1])
                    comma = ","
                    if self.last_bytes < BATCH_WEIGHT // 2:  # batches of about BATCH_WEIGHT bytes
                        size = min(size * 2, _MAX_BATCH)
                    elif self.last_bytes > BATCH_WEIGHT:
                        size = max(size // 2, 1)
                    continue
                # Item by item: too heavy to look at (half as many next), or not plain JSON or heavier than it
                # looked (one next); an item that was a batch of its own is not tried whole again (a pair's value
                # is, when the key alone may have been the reason: the marker key).
                size = 1 if light else max(size // 2, 1)
                tried = light and len(batch) == 1
                for item in batch:
                    if pairs is None:
                        self.write(comma)
                        self.value(item, depth + 1, tried=tried)
                    else:
                        key, inner = item
                        self.write(f"{comma}{encode(key)}:")
                        if self.redact is not None and is_secret(key, self.redact):
                            self.write(_REDACTED_JSON)
                            self.secret(inner, depth + 1)
                        else:
                            self.value(inner, depth + 1, tried=tried and key != MARKER_KEY)
                    comma = ","
            self.write("}" if is_dict else "]")
        finally:
            self.seen.discard(id(value))

    def secret(self, value: Any, depth: int) -> None:
        """A secret-looking key's value, recorded as REDACTED: whether converting it whole would differ."""
        if type(value) is str:
            if value != REDACTED:
                self.redacted = True
            return
        self.compare(REDACTED, value, depth)


def full_capture(value: Any, policy: CapturePolicy, prefix: str) -> dict[str, Any]:
    """The ``{prefix}_sha256``, ``{prefix}_capture`` and ``{prefix}_full`` fields of ``value``; never raises."""
    stream = _Stream(policy.redact, FULL_CAPTURE_MAX_BYTES)
    try:
        stream.value(value, 0)
        stream.flush()
    except Exception:  # a value whose conversion fails: nothing that can be reused
        return {f"{prefix}_capture": OutputCapture.UNREPRESENTABLE.value}
    how = OutputCapture.FULL
    if stream.marker:
        how = OutputCapture.UNREPRESENTABLE
    elif stream.unredacted_failed:  # as when the whole value could not be converted without redaction
        return {f"{prefix}_capture": OutputCapture.UNREPRESENTABLE.value}
    elif stream.redacted:
        how = OutputCapture.REDACTED
    fields: dict[str, Any] = {f"{prefix}_sha256": stream.hash.hexdigest()}
    if stream.kept is None:
        fields[f"{prefix}_capture"] = OutputCapture.TOO_LARGE.value
        return fields
    fields[f"{prefix}_capture"] = how.value
    fields[f"{prefix}_full"] = "".join(stream.kept)
    return fields
