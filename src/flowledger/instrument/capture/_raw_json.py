"""A captured payload kept as its encoded JSON until someone reads it."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from typing import Any, Final

import orjson

from flowledger.instrument.capture._jsonable import MAX_DEPTH, Encoded, convert, encode
from flowledger.instrument.capture._plain_json import too_deep
from flowledger.instrument.capture._redaction import fragments_of, mentions, probe_text, redacting_decoder

__all__ = ["RawJSON", "materialize"]

_decode: Final = json.JSONDecoder().decode
_orjson_loads: Final = orjson.loads


class RawJSON(Encoded):
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
        if too_deep(encoded, self._levels):  # the probe is skipped: redacting whatever it would find is the same
            plain = redacting_decoder(redact)(_as_text(data)) if redact is not None else _orjson_loads(encoded)
            data, redact = encode(convert(plain, None, MAX_DEPTH - self._levels, set())), None
        elif (
            redact is not None
            and self._probe
            and not mentions(probe_text(_as_text(data), self._hidden), redact, fragments_of(redact))
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
            return redacting_decoder(redact)(_as_text(data))
        return _orjson_loads(data) if isinstance(data, bytes) else _decode(data)

    def json(self) -> str:
        """The payload as JSON text, redacted."""
        data, redact = self._settled()
        if redact is not None:
            text = encode(self.value())  # redacted now, and final (a reader at the same time makes the same)
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
