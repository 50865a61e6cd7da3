"""The on-disk spool: atomic files, size cap, exclusive claims, reclaiming dead claims, corruption."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowledger.instrument.capture import RawJSON, materialize
from flowledger.instrument.delivery import _spool
from flowledger.instrument.delivery._spool import CLAIM_MARK, Spool, SpoolResult, decode_spooled_batch, encode_batch
from tests.instrument.delivery._sender_support import make_event


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_write_then_claim_round_trip(tmp_path: Path) -> None:
    """A written batch is read back whole by claim() and gone after delete()."""
    spool = Spool(tmp_path, 10**6)
    events = [make_event(i) for i in range(3)]
    assert spool.write(events) is SpoolResult.WRITTEN
    [name] = spool.ready_names()
    claim = spool.claim(name)
    assert claim is not None
    assert claim.events == events
    claim.delete()
    assert list(tmp_path.iterdir()) == []


def test_files_are_gzip_batches_named_in_time_order(tmp_path: Path) -> None:
    """Each file is gzip {"events": [...]}; names sort in the order batches were written."""
    spool = Spool(tmp_path, 10**6)
    batches = [[make_event(i)] for i in range(5)]
    for batch in batches:
        spool.write(batch)
    names = spool.ready_names()
    assert names == sorted(names)
    read = [json.loads(gzip.decompress((tmp_path / n).read_bytes()))["events"] for n in names]
    assert read == batches
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_cap_refuses_a_batch_that_does_not_fit(tmp_path: Path) -> None:
    """Writing past max_bytes returns FULL and leaves the folder as it was."""
    spool = Spool(tmp_path, 600)
    results = [spool.write([make_event(i, pad="x" * 200)]) for i in range(10)]
    assert SpoolResult.FULL in results
    assert spool.size_bytes() <= 600
    assert len(spool.ready_names()) == results.count(SpoolResult.WRITTEN)


def test_unwritable_folder_is_an_error_not_an_exception(tmp_path: Path) -> None:
    """A spool path that cannot be created returns ERROR instead of raising."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert Spool(blocker / "spool", 10**6).write([make_event()]) is SpoolResult.ERROR


def test_claim_is_exclusive(tmp_path: Path) -> None:
    """Two spools on one folder: only the first claim of a file succeeds, and a live claim stays."""
    first, second = Spool(tmp_path, 10**6), Spool(tmp_path, 10**6)
    first.write([make_event()])
    [name] = first.ready_names()
    assert first.claim(name) is not None
    assert second.claim(name) is None
    assert second.ready_names() == []  # a live process's claim is left alone


def test_release_puts_the_batch_back(tmp_path: Path) -> None:
    """A released claim is ready again under its original name."""
    spool = Spool(tmp_path, 10**6)
    spool.write([make_event()])
    [name] = spool.ready_names()
    claim = spool.claim(name)
    assert claim is not None
    claim.release()
    assert spool.ready_names() == [name]


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX pids")
def test_claim_of_dead_process_is_reclaimed(tmp_path: Path) -> None:
    """A claim held by a process that no longer exists is put back and can be replayed."""
    spool = Spool(tmp_path, 10**6)
    spool.write([make_event()])
    [name] = spool.ready_names()
    os.rename(tmp_path / name, tmp_path / f"{name}{CLAIM_MARK}{_dead_pid()}-abcd1234")
    assert spool.ready_names() == [name]
    assert spool.claim(name) is not None


def test_stale_claim_with_own_pid_but_other_token_is_reclaimed(tmp_path: Path) -> None:
    """A claim naming this pid but another token came from an earlier process with the same pid."""
    spool = Spool(tmp_path, 10**6)
    spool.write([make_event()])
    [name] = spool.ready_names()
    os.rename(tmp_path / name, tmp_path / f"{name}{CLAIM_MARK}{os.getpid()}-00000000")
    assert spool.ready_names() == [name]


def test_own_claim_in_progress_is_not_reclaimed(tmp_path: Path) -> None:
    """The process's own current claim is not handed out again."""
    spool = Spool(tmp_path, 10**6)
    spool.write([make_event()])
    [name] = spool.ready_names()
    assert spool.claim(name) is not None
    assert spool.ready_names() == []


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX pids")
def test_temp_file_of_dead_process_is_removed(tmp_path: Path) -> None:
    """A half-written temporary file left by a dead process is cleaned up."""
    stale = tmp_path / f".tmp-{_dead_pid()}-x"
    stale.write_bytes(b"partial")
    Spool(tmp_path, 10**6).ready_names()
    assert not stale.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not gzip", gzip.compress(b"{not json"), gzip.compress(b"[1,2]"), gzip.compress(b'{"events": [1]}')],
)
def test_corrupt_file_is_moved_aside(tmp_path: Path, content: bytes) -> None:
    """Whatever is wrong with a file, claim() moves it to corrupt/ and returns None."""
    (tmp_path / "0-bad.json.gz").write_bytes(content)
    spool = Spool(tmp_path, 10**6)
    assert spool.claim("0-bad.json.gz") is None
    assert (tmp_path / "corrupt" / "0-bad.json.gz").read_bytes() == content
    assert spool.corrupt_files == 1


def test_set_aside_keeps_one_event_by_id(tmp_path: Path) -> None:
    """set_aside() writes the event to rejected/<event_id>.json."""
    event = make_event()
    assert Spool(tmp_path, 10**6).set_aside(event) is SpoolResult.WRITTEN
    assert json.loads((tmp_path / "rejected" / f"{event['event_id']}.json").read_text()) == event


def test_decode_batch_rejects_non_batches() -> None:
    """decode_spooled_batch raises ValueError with a reason for anything but gzip {"events": [objects]}."""
    with pytest.raises(ValueError, match="batch"):
        decode_spooled_batch(gzip.compress(b'{"events": "x"}'))


def test_without_pid_checks_only_old_claims_are_taken_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pids cannot be checked safely, another process's claim is taken over only once it is old."""
    monkeypatch.setattr(_spool, "_CAN_CHECK_PIDS", False)
    spool = Spool(tmp_path, 10**6)
    spool.write([make_event()])
    [name] = spool.ready_names()
    claimed = tmp_path / f"{name}{CLAIM_MARK}{_dead_pid()}-abcd1234"
    os.rename(tmp_path / name, claimed)
    assert spool.ready_names() == []  # fresh: its owner may still be working on it
    old = time.time() - _spool.CLAIM_STALE_S - 60
    os.utime(claimed, (old, old))
    assert spool.ready_names() == [name]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_spool_is_private_to_its_owner(tmp_path: Path) -> None:
    """The spool folder and its files are readable by their owner only (they hold captured payloads)."""
    spool = Spool(tmp_path / "spool", 10**6)
    spool.write([make_event()])
    spool.set_aside(make_event())
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "spool" / "rejected").stat().st_mode & 0o777 == 0o700
    files = [p for p in (tmp_path / "spool").rglob("*") if p.is_file()]
    assert len(files) == 2
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)


class _CountingSpool(Spool):
    """A spool that counts how often it scans its folder."""

    scans = 0

    def size_bytes(self) -> int:
        self.scans += 1
        return super().size_bytes()


def test_folder_is_scanned_once_then_tracked(tmp_path: Path) -> None:
    """After one scan, writes, deliveries and cleanups keep a running total equal to a fresh scan."""
    for i in range(30):
        Spool(tmp_path, 10**7).write([make_event(i)])
    stale = tmp_path / f".tmp-{_dead_pid()}-x"
    stale.write_bytes(b"partial")
    spool = _CountingSpool(tmp_path, 10**7)
    for i in range(20):
        assert spool.write([make_event(i, pad="y" * i)]) is SpoolResult.WRITTEN
    spool.set_aside(make_event())
    names = spool.ready_names()
    for name in names[:10]:
        claim = spool.claim(name)
        assert claim is not None
        claim.delete()
    assert spool.scans == 1
    assert not stale.exists()
    assert spool.measure() == Spool(tmp_path, 10**7).size_bytes()


def test_full_by_the_running_total_rescans_for_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When files another process replayed made room, a batch refused by the running total is written after a rescan."""
    monkeypatch.setattr(_spool, "RESCAN_MIN_S", 0.0)
    spool = Spool(tmp_path, 2000)
    while spool.write([make_event(pad="x" * 300)]) is SpoolResult.WRITTEN:
        pass
    other = Spool(tmp_path, 2000)
    for name in other.ready_names():
        claim = other.claim(name)
        assert claim is not None
        claim.delete()
    assert spool.write([make_event(pad="x" * 300)]) is SpoolResult.WRITTEN


def test_write_time_estimate_follows_the_timings_seen() -> None:
    """The estimated write time grows with the bytes and with slower observed writes."""
    spool = Spool(Path("unused"), 10**6)
    fast = spool.estimated_write_s(1_000_000)
    assert 0 < fast < spool.estimated_write_s(2_000_000)
    for _ in range(20):
        spool.observe_write(1000, 1.0)
    assert spool.estimated_write_s(1_000_000) > 100 * fast


def test_batch_encoding_splices_captured_payloads() -> None:
    """encode_batch writes captured payloads (redacted) as decoding them first would, and no other text."""
    policy_key = re.compile("secret")
    events = [
        make_event(0, note="plain \x00 \u2603"),
        make_event(1, input=RawJSON('{"a": [1, 2.5, "\\u0000x"]}'), note="\x00flowledger-00:0"),
        make_event(2, output=RawJSON('{"secret": "s", "ok": true}', policy_key), input=RawJSON("null")),
    ]
    decoded_first = json.dumps({"events": [materialize(e) for e in events]})
    assert json.loads(encode_batch(events)) == json.loads(decoded_first)
    decoded = json.loads(encode_batch(events))["events"]
    assert decoded[2]["data"]["output"] == {"secret": "[REDACTED]", "ok": True}
    assert decoded[1]["data"]["note"] == "\x00flowledger-00:0"
    assert json.loads(encode_batch([make_event(3, value=float("nan"))]))["events"][0]["data"]["value"] is None
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_batch([make_event(3, value=object())])
