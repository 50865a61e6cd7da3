"""A captured payload read by several threads at once (each sink's worker writes the same event) is always redacted."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowledger.instrument._config import Settings
from flowledger.instrument.capture import CapturePolicy, RawJSON, capture

POLICY = CapturePolicy(Settings().redact_regex, 1 << 20)
TRIALS = 600
SECRET = "hunter2"


def _nested(levels: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


def _as_text(out: Any) -> str:
    if isinstance(out, bytes):
        return out.decode("utf-8")
    return out if isinstance(out, str) else repr(out)


@pytest.fixture(autouse=True)
def _switch_threads_often() -> Iterator[None]:
    """Threads switch every microsecond, so two readers interleave inside one read."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _leaks(make: Callable[[], Any], read: Callable[[RawJSON], Any]) -> int:
    """How many of ``TRIALS`` records, each read by two threads released together, showed the secret to anyone."""
    leaks = 0
    for _ in range(TRIALS):
        record, _size = capture(make(), POLICY)
        assert type(record) is RawJSON
        seen: list[str] = []
        barrier = threading.Barrier(2)

        def reader(record: RawJSON = record, seen: list[str] = seen, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            seen.append(_as_text(read(record)))

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seen.append(record.json())
        leaks += any(SECRET in text for text in seen)
    return leaks


def _deep_with_secret() -> dict[str, Any]:
    return {"a": [{"b": {"password": SECRET}} for _ in range(200)], "deep": _nested(70)}


@pytest.mark.parametrize("read", [RawJSON.raw, RawJSON.json, RawJSON.value], ids=["raw", "json", "value"])
def test_two_threads_cutting_one_deep_payload_never_see_its_secret(read: Callable[[RawJSON], Any]) -> None:
    """Two threads reading an over-deep payload at once both get it cut and redacted, and so does every later read."""
    assert _leaks(_deep_with_secret, read) == 0


def test_threads_mixing_readers_agree_on_one_redacted_cut_payload() -> None:
    """Four threads reading one deep payload in every way get the same redacted value, cut to the depth limit."""
    readers: list[Callable[[RawJSON], Any]] = [RawJSON.raw, RawJSON.json, RawJSON.value, RawJSON.raw]
    for _ in range(300):
        record, _size = capture(_deep_with_secret(), POLICY)
        assert type(record) is RawJSON
        values: list[Any] = []
        barrier = threading.Barrier(len(readers))

        def reader(
            read: Callable[[RawJSON], Any],
            record: RawJSON = record,
            values: list[Any] = values,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait()
            out = read(record)
            values.append(json.loads(out) if isinstance(out, (bytes, str)) else out)

        threads = [threading.Thread(target=reader, args=(read,)) for read in readers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(value == values[0] for value in values)
        text = json.dumps(values[0])
        assert SECRET not in text
        assert '"__flowledger__": "depth"' in text
