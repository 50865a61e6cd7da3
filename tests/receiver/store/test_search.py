"""The text a payload is indexed under: orjson's fast path writes exactly what the json-module path writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger._wire import EventKind
from flowledger.receiver._config import IngestLimits
from flowledger.receiver.ingest._batch import decode_batch
from flowledger.receiver.store._search import SEARCH_TEXT_MAX_CHARS, SearchSource, payload_text, texts_of_event

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e-05, 1e-07, 0.0001, 1e15, 1e16, 1e22, -0.0, 5e-324, 1.7976931348623157e308])
    | st.text()
)
_json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_json_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _through_decoder(value: Any) -> tuple[Any, bool]:
    """The value as ingest sees it: sent as JSON, decoded with the receiver's decoder."""
    batch = decode_batch(json.dumps({"events": [value]}, ensure_ascii=False).encode("utf-8"), IngestLimits())
    return batch.events[0], batch.plain_floats


@settings(max_examples=600, deadline=None)
@given(_json_values, _json_values)
def test_the_fast_path_indexes_the_text_json_writes(input_: Any, output: Any) -> None:
    """An attempt's input and output are indexed as the json module writes them, whichever path writes them."""
    data, plain_floats = _through_decoder({"input": input_, "output": output, "error": {"message": "boom"}})
    fast = texts_of_event(EventKind.NODE_FINISHED, data, plain_floats=plain_floats)
    assert fast == texts_of_event(EventKind.NODE_FINISHED, data)
    expected = [(SearchSource.ERROR, ": boom")] + [
        (SearchSource.PAYLOAD, (v if isinstance(v, str) else _json_text(v))[:SEARCH_TEXT_MAX_CHARS])
        for v in (data["input"], data["output"])
        if v is not None
    ]
    assert fast == expected


@pytest.mark.parametrize(
    "value",
    [{"b": 1e-05, "a": [1e16, 2**70]}, {"é": "ünïcode", "z": [True, None, 0.5]}, "plain text", [1, -0.0, 1e22]],
)
def test_keys_keep_their_order_and_numbers_their_spelling(value: Any) -> None:
    """Keys in the payload's order; 1e-05, 1e+16 and integers past 64 bits as json writes them; text as it is."""
    decoded, plain_floats = _through_decoder(value)
    assert payload_text(decoded, plain_floats=plain_floats) == (
        decoded if isinstance(decoded, str) else _json_text(decoded)
    )
