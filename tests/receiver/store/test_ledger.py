"""The ledger: append-only triggers, the hash chain, and `flowledger verify` finding tampering."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from flowledger.receiver.cli._commands import verify_command
from flowledger.receiver.store._canonical import GENESIS_HASH, canonical
from flowledger.receiver.store._entry import (
    ENTRY_COLUMNS,
    ENTRY_FORMAT,
    entry_bytes,
    entry_leaf,
    entry_of,
    parse_entry,
    payload_hash,
)
from flowledger.receiver.store._merkle import FIRST_STORED_MIN_LEVEL, STORED_MIN_LEVEL, Frontier
from tests.receiver._support import LiveReceiver, simple_run, typical_run
from tests.receiver.store._rewrite import rewrite_history, tamper


@pytest.fixture
def filled(live: LiveReceiver) -> LiveReceiver:
    """A receiver holding three runs (23 events)."""
    for run in (typical_run(), simple_run(), simple_run()):
        assert live.post(run.events).json()["rejected"] == []
    return live


_LEDGER_COLUMNS = (
    "seq, event_id, project, run_id, kind, ts, producer_id, producer_seq, received_at, entry, payload_hash, "
    "prev_hash, hash"
)


def _verify(db: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(verify_command, ["--db", str(db), *args])
    return result.exit_code, result.output


def _tamper(db: Path, *statements: str) -> None:
    tamper(db, *statements)


def test_chain_links_every_entry_to_the_one_before(filled: LiveReceiver) -> None:
    """Each row's hash is sha256(prev_hash || entry) from the genesis hash; the entry commits to the payload.

    The rows keep each entry as its fields (the entry column NULL), and the bytes they rebuild are the ones hashed.
    """
    with sqlite3.connect(filled.db_path) as conn:
        rows = conn.execute(
            f"SELECT {ENTRY_COLUMNS.format('l.')}, l.prev_hash, l.hash, p.body "
            "FROM ledger l JOIN payloads p ON p.seq = l.seq ORDER BY l.seq"
        ).fetchall()
    prev = GENESIS_HASH
    for row in rows:
        assert row[0] == ENTRY_FORMAT  # no entry bytes stored: the entry is its fields, of this format
        seq, event_id, run_id, kind, ts, _, _, _, digest, prev_hash, stored, body = row[1:]
        entry = entry_of(row[:10])
        assert prev_hash == prev
        assert stored == hashlib.sha256(b"\x00" + prev + entry).digest()  # format 3: the chain hash is the leaf
        assert digest == payload_hash(body.encode())
        fields = parse_entry(entry)
        assert (fields["seq"], fields["event_id"], fields["run_id"], fields["kind"], fields["ts"]) == (
            seq,
            event_id,
            run_id,
            kind,
            ts,
        )
        assert fields["payload_sha256"] == digest.hex()
        raw = json.loads(body)
        rebuilt = entry_bytes(
            seq=seq,
            event_id=event_id,
            run_id=run_id,
            kind=kind,
            ts=ts,
            project=raw.get("project"),
            producer_id=raw["producer_id"],
            producer_seq=raw["producer_seq"],
            payload_sha256=digest,
        )
        assert rebuilt == entry
        prev = stored
    assert [r[1] for r in rows] == list(range(1, len(rows) + 1))


def test_payload_is_the_canonical_encoding(filled: LiveReceiver) -> None:
    """A stored payload re-encodes to itself: sorted keys, no whitespace, UTF-8."""
    with sqlite3.connect(filled.db_path) as conn:
        for (body,) in conn.execute("SELECT body FROM payloads"):
            assert canonical(json.loads(body)) == body


def test_database_refuses_update_and_delete(filled: LiveReceiver) -> None:
    """Triggers make the ledger append-only at the database level, and payloads write-once."""
    with sqlite3.connect(filled.db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE ledger SET entry = x'00' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM ledger WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="write-once"):
            conn.execute("UPDATE payloads SET body = '{}' WHERE seq = 1")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT OR REPLACE INTO ledger SELECT * FROM ledger WHERE seq = 3",
        "INSERT OR REPLACE INTO ledger SELECT 99, event_id, project, run_id, kind, ts, producer_id, producer_seq, "
        "received_at, entry, payload_hash, prev_hash, hash FROM ledger WHERE seq = 3",
        "REPLACE INTO ledger SELECT seq, 'another', project, run_id, kind, ts, producer_id, producer_seq, "
        "received_at, entry, payload_hash, prev_hash, hash FROM ledger WHERE seq = 3",
    ],
    ids=["same-seq", "same-event-id", "replace"],
)
def test_insert_or_replace_cannot_get_past_the_triggers(filled: LiveReceiver, statement: str) -> None:
    """INSERT OR REPLACE deletes without firing DELETE triggers; an insert trigger refuses it instead."""
    with sqlite3.connect(filled.db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 23
    assert _verify(filled.db_path)[0] == 0


def test_verify_passes_an_intact_chain_and_prints_its_head(filled: LiveReceiver) -> None:
    """An untouched ledger verifies with exit 0 and a SEQ:HASH head to keep as a checkpoint."""
    code, output = _verify(filled.db_path)
    assert code == 0
    assert "ledger intact: 23 events" in output


def test_verify_names_an_edited_row(filled: LiveReceiver) -> None:
    """An entry edited by hand (after dropping the triggers) is found: exit 1 naming the event."""
    with sqlite3.connect(filled.db_path) as conn:
        event_id = conn.execute("SELECT event_id FROM ledger WHERE seq = 7").fetchone()[0]
    _tamper(filled.db_path, "UPDATE ledger SET producer_seq = producer_seq + 1 WHERE seq = 7")
    code, output = _verify(filled.db_path)
    assert code == 1
    assert event_id in output
    assert "row 7" in output
    assert "its producer_seq does not match the event's payload (the row was edited)" in output


def test_verify_names_an_edited_row_whose_payload_is_gone(filled: LiveReceiver) -> None:
    """With the payload purged nothing names the field, and the hash still finds the edit."""
    _tamper(
        filled.db_path,
        "UPDATE ledger SET producer_seq = producer_seq + 1 WHERE seq = 7",
        "DELETE FROM payloads WHERE seq = 7",
    )
    code, output = _verify(filled.db_path)
    assert code == 1
    assert "row 7" in output
    assert "its content does not match its hash (the row was edited)" in output


def test_verify_reads_a_stored_entry_before_the_columns(filled: LiveReceiver) -> None:
    """A row that stores its entry's bytes (made before entries were kept as fields) is checked by those bytes:
    stored as they were it verifies; edited, the hash finds it; its columns are checked against it."""
    with sqlite3.connect(filled.db_path) as conn:
        row = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')} FROM ledger WHERE seq = 7").fetchone()
    entry = entry_of(row)
    _tamper(filled.db_path, f"UPDATE ledger SET entry = x'{entry.hex()}' WHERE seq = 7")
    assert _verify(filled.db_path)[0] == 0
    edited = entry.replace(b'"producer_seq":', b'"producer_seq":1')
    _tamper(filled.db_path, f"UPDATE ledger SET entry = x'{edited.hex()}' WHERE seq = 7")
    code, output = _verify(filled.db_path)
    assert code == 1
    assert "row 7" in output
    assert "its producer_seq does not match the event's payload" in output
    _tamper(filled.db_path, f"UPDATE ledger SET entry = x'{entry.hex()}', kind = 'heartbeat' WHERE seq = 7")
    code, output = _verify(filled.db_path)
    assert code == 1
    assert "its kind column does not match the hashed entry (the column was edited)" in output


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        ("UPDATE payloads SET body = replace(body, 'fetch', 'FETCH') WHERE seq = 2", "payload was edited"),
        ("UPDATE ledger SET event_id = 'forged' WHERE seq = 2", "its event_id does not match"),
        ("UPDATE ledger SET run_id = 'forged' WHERE seq = 2", "its run_id does not match"),
        ("UPDATE ledger SET kind = 'run_finished' WHERE seq = 2", "its kind does not match"),
        ("UPDATE ledger SET ts = '2000-01-01T00:00:00.000000Z' WHERE seq = 2", "its ts does not match"),
        ("UPDATE ledger SET payload_hash = zeroblob(32) WHERE seq = 2", "its payload_hash does not match"),
        ("UPDATE payloads SET body = (SELECT body FROM payloads WHERE seq = 3) WHERE seq = 2", "payload"),
        ("DELETE FROM payloads WHERE seq = 2", "no purge entry covers"),
    ],
    ids=["payload", "event-id", "run-id", "kind", "ts", "payload-hash", "payload-swapped", "payload-deleted"],
)
def test_verify_checks_every_column_and_the_payload(filled: LiveReceiver, statement: str, words: str) -> None:
    """Every column is part of the hashed entry, named by the event's payload when edited; the payload is checked
    against its hash."""
    _tamper(filled.db_path, statement)
    code, output = _verify(filled.db_path)
    assert code == 1, output
    assert "row 2" in output
    assert words in output


def test_verify_names_the_row_after_a_deleted_one(filled: LiveReceiver) -> None:
    """A row removed from the middle of the chain is found."""
    _tamper(filled.db_path, "DELETE FROM ledger WHERE seq = 5")
    code, output = _verify(filled.db_path)
    assert code == 1
    assert "row 6" in output
    assert "missing" in output


def test_verify_finds_reordered_rows(filled: LiveReceiver) -> None:
    """Two rows swapped (bodies and hashes moved together) break the chain at the first of them."""
    _tamper(
        filled.db_path,
        "UPDATE ledger SET seq = -1 WHERE seq = 3",
        "UPDATE ledger SET seq = 3 WHERE seq = 4",
        "UPDATE ledger SET seq = 4 WHERE seq = -1",
    )
    code, output = _verify(filled.db_path)
    assert code == 1
    assert "row 3" in output


def test_verify_finds_a_rehashed_edit_through_a_checkpoint(filled: LiveReceiver) -> None:
    """An edit whose whole chain was recomputed passes the chain check but not a saved checkpoint."""
    code, output = _verify(filled.db_path)
    head = output.strip().rsplit(" ", 1)[-1]
    rewrite_history(filled.db_path, 2, b'"producer_seq":', b'"producer_seq":1')
    assert _verify(filled.db_path)[0] == 0  # what the chain and tree alone cannot prove
    code, output = _verify(filled.db_path, "--checkpoint", head)
    assert code == 1
    assert "checkpoint" in output


def test_verify_finds_truncation_through_a_checkpoint(filled: LiveReceiver) -> None:
    """Rows cut from the end are found when a checkpoint names a row beyond the new end."""
    head = _verify(filled.db_path)[1].strip().rsplit(" ", 1)[-1]
    _tamper(filled.db_path, "DELETE FROM ledger WHERE seq > 20")
    code, output = _verify(filled.db_path, "--checkpoint", head)
    assert code == 1
    assert "truncated" in output


def test_verify_over_http_matches_the_file(filled: LiveReceiver) -> None:
    """verify --url asks the running receiver and reports the same head."""
    by_file = _verify(filled.db_path)[1]
    result = CliRunner().invoke(verify_command, ["--url", filled.url])
    assert result.exit_code == 0
    assert result.output == by_file


def test_verify_command_in_a_subprocess(filled: LiveReceiver) -> None:
    """`flowledger verify` as a real process: exit 0 intact, 1 after tampering, no traceback."""
    command = [sys.executable, "-c", "from flowledger.cli import main; main()", "verify", "--db", str(filled.db_path)]
    ok = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    _tamper(filled.db_path, "UPDATE payloads SET body = body || ' ' WHERE seq = 1")
    broken = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert "Traceback" not in broken.stderr
    assert "row 1" in broken.stderr


def test_verify_of_a_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    """A wrong --db path is an error line and exit 2 (a usage error), not a new empty database."""
    code, output = _verify(tmp_path / "nope.db")
    assert code == 2  # a database that is not there: a usage error
    assert "no database" in output
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("event_id", "'0190a0b0-0000-7000-8000-000000000000'"),
        ("run_id", "'0190a0b0-0000-7000-8000-000000000001'"),
        ("kind", "'heartbeat'"),
        ("ts", "'2000-01-01T00:00:00.000000Z'"),
        ("project", "'alpha'"),
    ],
)
def test_verify_finds_an_edited_column(filled: LiveReceiver, column: str, value: str) -> None:
    """A column the receiver reads (event_id, run_id, kind, ts, project) edited by hand is found, naming the column."""
    with sqlite3.connect(filled.db_path) as conn:
        event_id = conn.execute("SELECT event_id FROM ledger WHERE seq = 5").fetchone()[0]
    _tamper(filled.db_path, f"UPDATE ledger SET {column} = {value} WHERE seq = 5")
    code, output = _verify(filled.db_path)
    assert code == 1
    assert "row 5" in output
    assert f"its {column} does not match the event's payload" in output
    if column != "event_id":
        assert event_id in output


def test_an_event_accepted_again_after_its_event_id_was_edited_is_found(filled: LiveReceiver) -> None:
    """Editing a row's event_id lets the original be stored again; verify then fails at the edited row."""
    run = simple_run()
    assert filled.post(run.events).json()["accepted"] == 4
    with sqlite3.connect(filled.db_path) as conn:
        seq = conn.execute("SELECT seq FROM ledger WHERE event_id = ?", (run.events[0]["event_id"],)).fetchone()[0]
    _tamper(filled.db_path, f"UPDATE ledger SET event_id = 'x' || event_id WHERE seq = {seq}")
    answer = filled.post(run.events).json()
    assert answer["accepted"] == 1  # the receiver finds stored events by that column
    code, output = _verify(filled.db_path)
    assert code == 1
    assert f"row {seq}" in output
    assert "its event_id does not match the event's payload" in output


def test_an_event_accepted_again_after_its_project_was_edited_is_found(filled: LiveReceiver) -> None:
    """Editing a row's project column moves its event id to another project, where the original is stored again;
    verify fails at the edited row, since the column must be the project the hashed entry names."""
    run = simple_run(project="alpha")
    assert filled.post(run.events).json()["accepted"] == 4
    with sqlite3.connect(filled.db_path) as conn:
        seq = conn.execute("SELECT seq FROM ledger WHERE event_id = ?", (run.events[0]["event_id"],)).fetchone()[0]
    assert _verify(filled.db_path)[0] == 0
    _tamper(filled.db_path, f"UPDATE ledger SET project = '' WHERE seq = {seq}")
    assert filled.post(run.events).json()["accepted"] == 1  # the event-id index reads that column
    code, output = _verify(filled.db_path)
    assert code == 1
    assert f"row {seq}" in output
    assert "its project does not match the event's payload" in output


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT OR REPLACE INTO ledger SELECT * FROM ledger WHERE seq = 3",
        f"REPLACE INTO ledger ({_LEDGER_COLUMNS}) SELECT seq, event_id, project, run_id, kind, ts, producer_id, "
        "producer_seq, received_at, '{}', payload_hash, prev_hash, hash FROM ledger WHERE seq = 3",
        f"INSERT OR REPLACE INTO ledger ({_LEDGER_COLUMNS}) SELECT (SELECT max(seq) + 1 FROM ledger), event_id, "
        "project, run_id, kind, ts, producer_id, producer_seq, received_at, entry, payload_hash, prev_hash, hash "
        "FROM ledger WHERE seq = 3",
        f"INSERT OR REPLACE INTO ledger ({_LEDGER_COLUMNS}) SELECT (SELECT max(seq) + 1 FROM ledger), event_id, "
        "project, run_id, kind, ts, producer_id, producer_seq, received_at, entry, payload_hash, prev_hash, hash "
        "FROM ledger WHERE project = 'alpha' LIMIT 1",
        f"INSERT INTO ledger ({_LEDGER_COLUMNS}) SELECT (SELECT max(seq) + 5 FROM ledger), 'new', project, run_id, "
        "kind, ts, producer_id, producer_seq, received_at, entry, payload_hash, prev_hash, hash FROM ledger "
        "WHERE seq = 3",
    ],
    ids=[
        "replace-same-row",
        "replace-with-edit",
        "replace-by-event-id",
        "replace-by-event-id-in-a-project",
        "insert-past-the-end",
    ],
)
@pytest.mark.parametrize("recursive_triggers", [False, True], ids=["plain", "recursive-triggers"])
def test_the_database_refuses_replacing_or_skipping_rows(
    filled: LiveReceiver, statement: str, recursive_triggers: bool
) -> None:
    """INSERT OR REPLACE (which deletes without the DELETE trigger unless a connection turns recursive_triggers
    on) and rows past the end are refused, in a project too."""
    assert filled.post(simple_run(project="alpha").events).json()["accepted"] == 4
    with sqlite3.connect(filled.db_path) as conn:
        conn.execute(f"PRAGMA recursive_triggers = {int(recursive_triggers)}")
        before = conn.execute("SELECT seq, event_id, entry FROM ledger ORDER BY seq").fetchall()
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
        assert conn.execute("SELECT seq, event_id, entry FROM ledger ORDER BY seq").fetchall() == before


def test_a_failed_checkpoint_comparison_names_the_event(filled: LiveReceiver) -> None:
    """A checkpoint whose row now carries another hash is reported with that row's event id, never 'event None'."""
    head = _verify(filled.db_path)[1].strip().rsplit(" ", 1)[-1]
    seq = int(head.split(":")[0])
    with sqlite3.connect(filled.db_path) as conn:
        event_id = conn.execute("SELECT event_id FROM ledger WHERE seq = ?", (seq,)).fetchone()[0]
    code, output = _verify(filled.db_path, "--checkpoint", f"{seq}:{'0' * 64}")
    assert code == 1
    assert event_id in output
    assert "None" not in output
    _tamper(filled.db_path, f"DELETE FROM ledger WHERE seq >= {seq - 2}")
    code, output = _verify(filled.db_path, "--checkpoint", head)
    assert code == 1
    assert "None" not in output
    assert f"row {seq}" in output


@pytest.fixture
def large(live: LiveReceiver) -> LiveReceiver:
    """A receiver holding 600 events: the Merkle tree stores its subtrees of 256 entries."""
    for _ in range(3):
        assert live.post([e for _ in range(50) for e in simple_run().events]).json()["rejected"] == []
    with sqlite3.connect(live.db_path) as conn:
        assert conn.execute("SELECT level, idx FROM merkle_nodes ORDER BY level, idx").fetchall() == [
            (8, 0),
            (8, 1),
            (9, 0),
        ]
    return live


def test_verify_checks_the_stored_merkle_tree(large: LiveReceiver) -> None:
    """A stored Merkle tree node that does not match the entries fails verify."""
    _tamper(large.db_path, "UPDATE merkle_nodes SET hash = zeroblob(32)")
    code, output = _verify(large.db_path)
    assert code == 1
    assert "Merkle tree node at level 8" in output
    _tamper(large.db_path, "DELETE FROM merkle_nodes")
    code, output = _verify(large.db_path)
    assert code == 1
    assert "3 stored Merkle tree nodes are missing" in output


def test_verify_checks_the_smaller_subtrees_older_ledgers_stored(large: LiveReceiver) -> None:
    """A ledger made when subtrees of 16 entries and up were stored keeps them: right, it verifies; edited, not."""
    with sqlite3.connect(large.db_path) as conn:
        rows = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')}, prev_hash FROM ledger ORDER BY seq").fetchall()
    leaves = [entry_leaf(bytes(row[10]), entry_of(row[:10])) for row in rows]
    older = Frontier().extend(leaves, keep_from_level=FIRST_STORED_MIN_LEVEL)
    smaller = [(level, index, digest) for level, index, digest in older if level < STORED_MIN_LEVEL]
    assert len(smaller) == 600 // 16 + 600 // 32 + 600 // 64 + 600 // 128
    with sqlite3.connect(large.db_path) as conn:
        conn.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", smaller)
    assert _verify(large.db_path)[0] == 0
    _tamper(large.db_path, "UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = 5 AND idx = 3")
    code, output = _verify(large.db_path)
    assert code == 1
    assert "Merkle tree node at level 5, index 3 (entries 97..128)" in output


def test_merkle_nodes_cannot_be_replaced(large: LiveReceiver) -> None:
    """The stored tree is append-only too, INSERT OR REPLACE included."""
    with sqlite3.connect(large.db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("INSERT OR REPLACE INTO merkle_nodes VALUES (8, 0, zeroblob(32))")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM merkle_nodes")


def test_an_integer_sent_as_a_float_is_hashed_as_the_integer_it_is_stored_as(filled: LiveReceiver) -> None:
    """The schema takes ``1e16`` and ``-0.0`` as integers; the ledger keeps ``producer_seq`` as an integer column and
    rebuilds the entry from it, so the hashed entry holds the integer too and the ledger still verifies."""
    run = simple_run()
    run.events[0]["producer_seq"] = 1e16
    run.events[1]["producer_seq"] = -0.0
    assert filled.post(run.events).json()["accepted"] == 4
    with sqlite3.connect(filled.db_path) as conn:
        stored = conn.execute(
            "SELECT producer_seq, typeof(producer_seq) FROM ledger WHERE event_id IN (?, ?) ORDER BY seq",
            (run.events[0]["event_id"], run.events[1]["event_id"]),
        ).fetchall()
    assert stored == [(10**16, "integer"), (0, "integer")]
    code, output = _verify(filled.db_path)
    assert code == 0, output


def test_a_purge_of_the_runs_without_a_project_verifies(filled: LiveReceiver) -> None:
    """A purge scoped to no project (``?project=`` empty) names no project in its entry, which its row's fields then
    rebuild byte for byte: the ledger verifies after it, and after more events."""
    run = simple_run()
    assert filled.post(run.events).json()["accepted"] == 4
    answer = httpx.delete(f"{filled.url}/api/runs/{run.run_id}", params={"project": ""}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert filled.post(simple_run().events).json()["accepted"] == 4
    code, output = _verify(filled.db_path)
    assert code == 0, output


def test_a_blob_in_a_text_column_is_reported_as_an_edited_row(filled: LiveReceiver) -> None:
    """A column edited by hand to hold what no entry can (a blob) makes no entry: verify names the row, no crash."""
    _tamper(filled.db_path, "UPDATE ledger SET event_id = X'41' WHERE seq = 2")
    code, output = _verify(filled.db_path)
    assert code == 1
    assert "row 2" in output
    assert "the row was edited" in output
    assert "Traceback" not in output
