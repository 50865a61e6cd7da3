"""The JSONL sink: whole lines from threads and forked processes, a size cap backed by the spool, torn lines."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from flowledger.instrument._config import FsyncPolicy
from flowledger.instrument.delivery._jsonl import JsonlSender, append_lines
from tests.instrument.delivery._sender_support import make_event, make_settings, spooled_events


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_events_are_appended_one_per_line(tmp_path: Path) -> None:
    """Every submitted event becomes one JSON line, in order, and the file is its owner's only."""
    path = tmp_path / "events.jsonl"
    sink = JsonlSender(make_settings(tmp_path / "spool"), path)
    events = [make_event(i, index=i) for i in range(25)]
    for event in events:
        sink.submit(event, 300)
    assert sink.flush(5.0)
    assert [e["event_id"] for e in _lines(path)] == [e["event_id"] for e in events]
    assert sink.stats()["sent"] == 25
    assert path.stat().st_mode & 0o777 == 0o600
    sink.shutdown(1.0)


def test_an_event_json_cannot_carry_is_written_cleaned_not_dropped(tmp_path: Path) -> None:
    """An event holding a lone surrogate (or another value orjson refuses) is written as the receiver sink sends
    it, cleaned as capture cleans values (U+FFFD), in its place among the others; nothing is dropped."""
    path = tmp_path / "events.jsonl"
    sink = JsonlSender(make_settings(tmp_path / "spool"), path)
    odd = make_event(1, text="lone \ud800 surrogate", **{"k\udcff": "v"}, huge=2**70)
    events = [make_event(0), odd, make_event(2)]
    for event in events:
        sink.submit(event, 300)
    assert sink.flush(5.0)
    lines = _lines(path)
    assert [e["event_id"] for e in lines] == [e["event_id"] for e in events]
    assert lines[1]["data"]["text"] == "lone \ufffd surrogate"
    assert lines[1]["data"]["k\ufffd"] == "v"
    assert lines[1]["data"]["huge"] != 2**70  # a marker: JSON tools cannot carry it as a number
    assert (sink.stats()["sent"], sink.stats()["dropped_unserializable"]) == (3, 0)
    sink.shutdown(1.0)


def test_threads_and_a_forked_child_never_interleave_lines(tmp_path: Path) -> None:
    """Four threads and a forked child append to one file: every line parses and none is lost."""
    path = tmp_path / "events.jsonl"
    settings = make_settings(tmp_path / "spool", batch_max_items=7)
    sink = JsonlSender(settings, path)
    payload = "x" * 3000  # lines longer than a pipe buffer's atomic write

    def produce(tag: str, count: int) -> None:
        for i in range(count):
            sink.submit(make_event(i, tag=tag, blob=payload), 3400)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            produce("child", 200)
            code = 0 if sink.flush(10.0) else 1
        finally:
            os._exit(code)
    threads = [threading.Thread(target=produce, args=(f"t{n}", 100)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sink.flush(10.0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    lines = _lines(path)
    tags = [line["data"]["tag"] for line in lines]
    assert len(lines) == 600
    assert {tag: tags.count(tag) for tag in set(tags)} == {"child": 200, "t0": 100, "t1": 100, "t2": 100, "t3": 100}
    sink.shutdown(1.0)


def test_a_full_file_sends_events_to_the_spool_and_they_follow_once_it_has_room(tmp_path: Path) -> None:
    """Past jsonl_max_bytes batches are spooled, not dropped; after the file is moved away they are written."""
    path = tmp_path / "events.jsonl"
    spool = tmp_path / "spool"
    sink = JsonlSender(make_settings(spool, jsonl_max_bytes=8000), path)
    events = [make_event(i, index=i, blob="y" * 200) for i in range(40)]
    for event in events[:10]:
        sink.submit(event, 500)
    assert sink.flush(5.0)
    for event in events[10:]:
        sink.submit(event, 500)
    sink.flush(5.0)
    written = _lines(path)
    assert 0 < len(written) < 40
    assert path.stat().st_size <= 8000
    waiting = spooled_events(spool)
    assert {e["event_id"] for e in written} | {e["event_id"] for e in waiting} == {e["event_id"] for e in events}
    imported = list(written)
    for round_ in range(5):  # each time the file is imported and moved away, it has room for more
        path.rename(tmp_path / f"imported-{round_}.jsonl")
        sink.flush(2.0)
        imported += _lines(path)
        if not spooled_events(spool):
            break
    ids = [e["event_id"] for e in imported]
    assert sorted(ids) == sorted(e["event_id"] for e in events)  # each exactly once
    sink.shutdown(1.0)


def test_a_line_torn_by_a_crash_is_closed_before_the_next_batch(tmp_path: Path) -> None:
    """A file that ends mid-line (a writer died) gets a newline first, so the next events stay readable."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event_id": "torn')
    result = append_lines(path, [b'{"a": 1}\n'], max_bytes=1 << 20, fsync=FsyncPolicy.NEVER)
    assert result.written == 1
    assert path.read_bytes().splitlines() == [b'{"event_id": "torn', b'{"a": 1}']


def test_an_unwritable_file_spools_instead_of_losing_events(tmp_path: Path) -> None:
    """A path that cannot be opened (a folder in the way) leaves every event in the spool."""
    path = tmp_path / "taken"
    path.mkdir()
    spool = tmp_path / "spool"
    sink = JsonlSender(make_settings(spool), path)
    for i in range(5):
        sink.submit(make_event(i), 300)
    assert not sink.flush(2.0)
    assert len(spooled_events(spool)) == 5
    assert sink.stats()["spooled"] == 5
    sink.shutdown(0.5)


@pytest.mark.parametrize("policy", list(FsyncPolicy))
def test_both_fsync_policies_write_the_lines_that_fit(tmp_path: Path, policy: FsyncPolicy) -> None:
    """fsync after each batch or never: the lines within the cap are written, the rest are reported."""
    path = tmp_path / "events.jsonl"
    result = append_lines(path, [b"{}\n", b"{}\n", b"{}\n"], max_bytes=7, fsync=policy)
    assert (result.written, result.full) == (2, True)
    assert path.read_bytes() == b"{}\n{}\n"
