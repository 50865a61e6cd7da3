"""The canonical encoding: the fast path writes exactly the bytes of the json-module path."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings

from flowledger.receiver._config import IngestLimits
from flowledger.receiver.ingest._batch import decode_batch
from flowledger.receiver.store._canonical import canonical, canonical_utf8
from tests._json_values import json_values

_json_values = json_values()


def _through_decoder(value: Any) -> tuple[Any, bool]:
    """The value as ingest sees it: sent as JSON, decoded with the receiver's decoder."""
    batch = decode_batch(json.dumps({"events": [value]}, ensure_ascii=False).encode("utf-8"), IngestLimits())
    return batch.events[0], batch.plain_floats


@settings(max_examples=600, deadline=None)
@given(_json_values)
def test_fast_path_writes_the_same_bytes_as_json(value: Any) -> None:
    """For any JSON value a client can send, the bytes ingest stores are exactly the json module's."""
    decoded, plain_floats = _through_decoder(value)
    expected = canonical(decoded).encode("utf-8")
    assert canonical_utf8(decoded, plain_floats=plain_floats) == expected
    assert canonical_utf8(decoded) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"d": 1e-05},
        {"d": [1e16]},
        {"d": 2.5e-300},
        {"d": 9999999999999998.0, "e": 0.0001, "f": -0.0},
        {"d": 2**64},
        {"d": -(2**63) - 1},
        {"é": "😀", "e": "\u2028\x7f\x01"},
    ],
)
def test_numbers_orjson_writes_differently_take_the_json_path(value: Any) -> None:
    """Floats near the plain range's ends, integers beyond 64 bits and non-ASCII text come out as json writes them."""
    decoded, plain_floats = _through_decoder(value)
    assert canonical_utf8(decoded, plain_floats=plain_floats) == canonical(decoded).encode("utf-8")


def test_lone_surrogate_and_infinity_raise_as_json_does() -> None:
    """A lone surrogate is a UnicodeEncodeError and an infinite float a ValueError, on either path."""
    with pytest.raises(UnicodeEncodeError):
        canonical_utf8({"a": "\ud800"}, plain_floats=True)
    with pytest.raises(ValueError, match="Out of range"):
        canonical_utf8({"a": math.inf})


def test_decoder_notes_floats_outside_the_plain_range() -> None:
    """1e400 (infinity) and 1e-05 mark a body as not plain; ordinary floats and integers do not."""
    assert _through_decoder({"a": [1.5, 0.0, 0.001, 12345678.9, 2**70]})[1]
    assert not _through_decoder({"a": 1e-05})[1]
    overflowing = decode_batch(b'{"events": [{"a": 1e400}]}', IngestLimits())
    assert not overflowing.plain_floats
    assert overflowing.events == [{"a": math.inf}]
