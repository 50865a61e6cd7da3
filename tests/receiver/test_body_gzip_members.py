"""A gzip body of several members (RFC 1952; ``cat a.gz b.gz``, pigz) is read whole on /v1/events and OTLP, within
the same inflated-size limit across its members: a bomb split into members is still a 413."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowledger.receiver._config import IngestLimits, ReceiverConfig
from tests.receiver._support import LiveReceiver, simple_run, start_receiver

_LIMIT = 64 * 1024
"""The receiver's max_inflated_bytes in these tests."""


@pytest.fixture
def small(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A receiver whose bodies may inflate to _LIMIT bytes."""
    limits = IngestLimits(max_body_bytes=_LIMIT, max_inflated_bytes=_LIMIT)
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0, limits=limits))
    yield receiver
    receiver.stop()


def _post(live: LiveReceiver, path: str, body: bytes) -> httpx.Response:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    return httpx.post(f"{live.url}{path}", content=body, headers=headers, timeout=30)


def test_a_body_of_several_gzip_members_is_read_whole(small: LiveReceiver) -> None:
    """A JSON body cut in three and each piece gzipped alone, concatenated: every event is stored."""
    run = simple_run()
    text = json.dumps({"events": run.events}).encode()
    cuts = (len(text) // 3, 2 * len(text) // 3)
    members = [text[: cuts[0]], text[cuts[0] : cuts[1]], text[cuts[1] :]]
    answer = _post(small, "/v1/events", b"".join(gzip.compress(member) for member in members))
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(run.events)
    otlp = _post(small, "/v1/logs", gzip.compress(b'{"resourceLogs"') + gzip.compress(b": []}"))
    assert (otlp.status_code, otlp.json()) == (200, {})


def test_a_bomb_split_across_members_is_413(small: LiveReceiver) -> None:
    """Members each within the limit but past it together are refused as one member past it is."""
    member = gzip.compress(b" " * (_LIMIT // 2 + 1))
    answer = _post(small, "/v1/events", member + member)
    assert answer.status_code == 413, answer.text
    assert f"inflates to more than {_LIMIT} bytes" in answer.json()["error"]
    otlp = _post(small, "/v1/metrics", member + member)
    assert otlp.status_code == 413


def test_bytes_after_a_member_that_are_no_member_are_400(small: LiveReceiver) -> None:
    """Trailing bytes that are not gzip, or a second member cut short, are refused as not valid gzip."""
    body = gzip.compress(json.dumps({"events": simple_run().events}).encode())
    for tail in (b"junk", gzip.compress(b"{}")[:-4]):
        answer = _post(small, "/v1/events", body + tail)
        assert answer.status_code == 400, answer.text
        assert "not valid gzip" in answer.json()["error"]


def test_more_members_than_a_body_may_hold_are_400_and_each_is_fed_in_bounded_pieces(
    small: LiveReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thousand members are read (empty ones around the JSON too); one more is a 400 naming the cap. The inflater
    is never handed more than _FEED_BYTES of the body: what follows a member is not copied whole for the next one
    (that copy made 120,000 empty members hold the receiver 9 s)."""
    from flowledger.receiver import _body

    empty = gzip.compress(b"")
    text = json.dumps({"events": simple_run().events}).encode()
    fed: list[int] = []
    real = zlib.decompressobj

    class Watched:
        def __init__(self, wbits: int) -> None:
            self._inner = real(wbits)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            fed.append(len(data))
            return bytes(self._inner.decompress(data, max_length))

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

    monkeypatch.setattr(zlib, "decompressobj", Watched)
    monkeypatch.setattr(_body, "_FEED_BYTES", 256)
    body = empty * (_body.MAX_GZIP_MEMBERS - 1) + gzip.compress(text)
    assert _body._inflate(body, 10 * len(text)) == text
    assert max(fed) <= 256 < len(body)
    monkeypatch.undo()
    assert _post(small, "/v1/events", empty * 500 + gzip.compress(text)).status_code == 200
    answer = _post(small, "/v1/events", empty * _body.MAX_GZIP_MEMBERS + gzip.compress(text))
    assert answer.status_code == 400, answer.text
    assert f"more than {_body.MAX_GZIP_MEMBERS} gzip members" in answer.json()["error"]
