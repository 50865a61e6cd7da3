"""Decoding an ingest body: msgspec reads what the json module reads, and hands the rest to it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger._exceptions import BodyError
from flowledger.receiver._config import IngestLimits
from flowledger.receiver.ingest._batch import _decode_json, _FloatReader, decode_batch
from tests._json_values import json_values

_json_values = json_values(int_bits=200, infinity=True)


def _typed(value: Any) -> Any:
    """The value with each scalar's type and each float's exact text, so 1 and 1.0, 0.0 and -0.0 differ."""
    if isinstance(value, dict):
        return ("dict", [(key, _typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(item) for item in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


def _by_json(body: bytes) -> tuple[Any, bool]:
    floats = _FloatReader()
    return _decode_json(body, floats)["events"], floats.plain


@settings(max_examples=500, deadline=None)
@given(_json_values, st.booleans())
def test_the_decoder_builds_what_the_json_module_builds(value: Any, ascii_only: bool) -> None:
    """For any JSON value (lone surrogates, huge integers, 1e400 included) the events and the float flag are json's."""
    body = json.dumps({"events": [value]}, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        expected = _by_json(body)
    except BodyError:
        with pytest.raises(BodyError):
            decode_batch(body, IngestLimits())
        return
    batch = decode_batch(body, IngestLimits())
    assert (_typed(batch.events), batch.plain_floats) == (_typed(expected[0]), expected[1])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"\\ud800 x"', "\ud800 x"),
        ('{"k\\udfff": 1}', {"k\udfff": 1}),
        ("1" * 30, int("1" * 30)),
    ],
)
def test_a_value_msgspec_refuses_is_read_by_the_json_module(text: str, value: Any) -> None:
    """A lone surrogate escape or a long integer still decodes (the event holding it is judged later), not a 400."""
    batch = decode_batch(f'{{"events": [{text}]}}'.encode(), IngestLimits())
    assert batch.events == [value]


def test_a_float_beyond_the_double_range_marks_the_batch() -> None:
    """1e400 reads as infinity and the batch is marked as not plain, so its canonical form takes the json path."""
    batch = decode_batch(b'{"events": [{"a": 1e400}, {"b": 1.5}]}', IngestLimits())
    assert batch.events == [{"a": math.inf}, {"b": 1.5}]
    assert batch.plain_floats is False
    assert decode_batch(b'{"events": [{"b": 1.5, "c": 0.0}]}', IngestLimits()).plain_floats is True


def test_an_integer_with_too_many_digits_is_named_without_advice_for_the_server() -> None:
    """Past Python's limit on digits, the 400 says what the body holds, not "use sys.set_int_max_str_digits()"."""
    body = b'{"events": [{"n": ' + b"7" * 5000 + b"}]}"
    with pytest.raises(BodyError) as raised:
        decode_batch(body, IngestLimits())
    assert raised.value.status == 400
    assert str(raised.value.message).endswith(
        "it holds an integer of 5000 digits, and the receiver reads integers of 4300 at most"
    )
    assert "sys." not in raised.value.message
    assert decode_batch(b'{"events": [{"n": -' + b"7" * 4300 + b"}]}", IngestLimits()).events[0]["n"] < 0
