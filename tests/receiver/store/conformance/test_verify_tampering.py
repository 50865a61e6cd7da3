"""The Store conformance suite, verify against an insider's edits: payloads deleted around purges, payloads of the
wrong shape with their hashes recomputed, edited full outputs. Each edit is made in the database by hand, its
append-only triggers dropped first, as an owner of the database could."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowledger.receiver.store._entry import ENTRY_COLUMNS, entry_hash, entry_of
from flowledger.receiver.store._protocol import EventOutcome, PurgeSelection, Store, VerifyReport
from tests.receiver._support import RunEvents, simple_run, typical_run
from tests.receiver.store._rewrite import TRIGGERS
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_PG_TRIGGERS = ("ledger_no_update ON ledger", "ledger_no_delete ON ledger", "payloads_no_update ON payloads")


class _Insider:
    """Runs SQL (``?`` placeholders) on the engine's database, its append-only triggers dropped."""

    def __init__(self, engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.postgres = engine_kind == "postgres"
        self._url = request.getfixturevalue("postgres_url") if self.postgres else ""
        self._db = tmp_path / "conformance.db"

    async def run(self, *statements: tuple[str, tuple[Any, ...]]) -> list[list[Any]]:
        """Run ``statements`` in one transaction; the rows each returned."""
        if self.postgres:
            import asyncpg

            conn = await asyncpg.connect(self._url)
            try:
                async with conn.transaction():
                    for trigger in _PG_TRIGGERS:
                        await conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
                    out = []
                    for sql, params in statements:
                        for number in range(1, len(params) + 1):
                            sql = sql.replace("?", f"${number}", 1)
                        out.append([tuple(row) for row in await conn.fetch(sql, *params)])
                    return out
            finally:
                await conn.close()
        db = sqlite3.connect(self._db)
        try:
            with db:
                for trigger in TRIGGERS:
                    db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
                return [db.execute(sql, params).fetchall() for sql, params in statements]
        finally:
            db.close()

    async def rewrite_last_payload(self, body: str) -> int:
        """Give the last ledger row the payload ``body`` and recompute its entry and hash (so only the payload's
        shape is wrong); return its seq. A ledger this small keeps no Merkle tree node to recompute."""
        digest = hashlib.sha256(body.encode()).digest()
        ((seq,),) = (await self.run(("SELECT max(seq) FROM ledger", ())))[0]
        if self.postgres:
            ((entry, old, prev),) = (
                await self.run(("SELECT entry, payload_hash, prev_hash FROM ledger WHERE seq = ?", (seq,)))
            )[0]
            entry = bytes(entry).replace(bytes(old).hex().encode(), digest.hex().encode())
        else:
            ((*columns, prev),) = (
                await self.run((f"SELECT {ENTRY_COLUMNS.format('')}, prev_hash FROM ledger WHERE seq = ?", (seq,)))
            )[0]
            entry = entry_of((*columns[:9], digest))
        await self.run(
            ("UPDATE payloads SET body = ? WHERE seq = ?", (body, seq)),
            *(
                [("UPDATE ledger SET entry = ? WHERE seq = ?", (entry, seq))] if self.postgres else []  # kept as bytes
            ),
            (
                "UPDATE ledger SET payload_hash = ?, hash = ? WHERE seq = ?",
                (digest, entry_hash(bytes(prev), entry), seq),
            ),
        )
        return int(seq)


@pytest.fixture
def insider(engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> _Insider:
    """Edits the database of the store under test by hand."""
    return _Insider(engine_kind, request, tmp_path)


async def _append(store: Store, *runs: RunEvents) -> None:
    outcomes = await store.append(prepared([e for run in runs for e in run.events]))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}


def _late_event(run_id: str) -> RunEvents:
    """A new event of ``run_id`` (sent after its run was purged)."""
    late = RunEvents()
    late.run_id = run_id
    return late.start()


def _broken(report: VerifyReport, seq: int | None, *words: str) -> None:
    assert not report.ok, report
    assert report.first_bad_seq == seq, report
    for word in words:
        assert word in (report.problem or ""), report


async def test_a_payload_deleted_after_its_runs_purge_fails_verify(store: Store, insider: _Insider) -> None:
    """A late event of a purged run whose payload is then deleted is not covered by the purge before it."""
    kept, gone = simple_run(), typical_run()
    await _append(store, kept, gone)
    purge = await store.purge(PurgeSelection(run_ids=(gone.run_id,), by="cli"))
    await _append(store, _late_event(gone.run_id))
    late_seq = (await store.verify()).head_seq
    assert purge.purge_seq is not None
    assert late_seq == purge.purge_seq + 1
    await insider.run(("DELETE FROM payloads WHERE seq = ?", (late_seq,)))
    _broken(await store.verify(), late_seq, "payload is gone", f"no purge entry covers run {gone.run_id} after it")


async def test_a_purge_naming_no_project_and_one_naming_a_project_of_a_shared_id_verify(store: Store) -> None:
    """One run id in two projects with as many events each: a purge by workflow (no project) erases one, a purge
    of the other project's run the other; the ledger verifies, whichever project's events came first."""
    for first, second in (("alpha", "beta"), ("beta", "alpha")):
        earlier, later = RunEvents(project=first), RunEvents(project=second, workflow_id=f"w-{second}")
        later.run_id = earlier.run_id
        await _append(store, earlier.start().node("fetch").finish(), later.start().node("fetch").finish())
        await store.purge(PurgeSelection(workflow_id=f"w-{second}", by="cli"))  # the later-stored one's
        await store.purge(PurgeSelection(run_ids=(earlier.run_id,), project=first, by="key"))
        report = await store.verify()
        assert report.ok, report


async def test_late_events_purged_again_still_verify(store: Store) -> None:
    """A run purged, sent again and purged again: each purge accounts for the payloads it erased."""
    gone = typical_run()
    await _append(store, simple_run(), gone)
    await store.purge(PurgeSelection(run_ids=(gone.run_id,), by="cli"))
    await _append(store, _late_event(gone.run_id), simple_run())
    again = await store.purge(PurgeSelection(run_ids=(gone.run_id,), by="cli"))
    assert again.events == 1
    ours, theirs = RunEvents(project="alpha"), RunEvents(project="beta")
    theirs.run_id = ours.run_id
    await _append(store, ours.start().node("fetch").finish(), theirs.start().node("fetch").finish())
    await store.purge(PurgeSelection(run_ids=(ours.run_id,), project="beta", by="key"))
    await store.purge(PurgeSelection(run_ids=(ours.run_id,), project="alpha", by="key"))
    report = await store.verify()
    assert report.ok, report
    assert (report.purges, report.payloads_erased) == (4, len(gone.events) + 1 + 2 * len(ours.events))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"runs":5,"selection":{},"events":1}', "not a purge record (its runs"),
        ('{"runs":["x"],"selection":"p1","events":1}', "not a purge record (its selection"),
        ('{"runs":[["a"]],"selection":{},"events":1}', "not a purge record (its runs"),
        ("[1,2]", "not a purge record (it is not a JSON object"),
    ],
)
async def test_a_purge_payload_of_the_wrong_shape_fails_verify(
    store: Store, insider: _Insider, body: str, says: str
) -> None:
    """A purge record rewritten to valid JSON of another shape, its hashes recomputed, is named, not a crash."""
    gone = simple_run()
    await _append(store, simple_run(), gone)
    purge = await store.purge(PurgeSelection(run_ids=(gone.run_id,), by="cli"))
    assert await insider.rewrite_last_payload(body) == purge.purge_seq
    _broken(await store.verify(), purge.purge_seq, says)


@pytest.mark.parametrize("body", ["[1,2]", '"text"', "5"])
async def test_an_event_payload_of_the_wrong_shape_fails_verify(store: Store, insider: _Insider, body: str) -> None:
    """An event's payload rewritten to JSON that is not an object, its hashes recomputed, is named, not a crash."""
    run = simple_run()
    await _append(store, run)
    seq = await insider.rewrite_last_payload(body)
    _broken(await store.verify(), seq, "its payload is not an event")


async def test_an_edited_full_output_fails_verify(store: Store, insider: _Insider) -> None:
    """A blob (a node's output captured in full) edited in place: verify names its key and the row committing to it."""
    run = RunEvents().start().node("fetch").finish()
    text = json.dumps({"order": "ORIGINAL-1"}, separators=(",", ":"))
    key = hashlib.sha256(text.encode()).hexdigest()
    for event in run.events:
        if event["kind"] == "node_finished":
            event["data"].update(output_full=text, output_capture="full", output_sha256=key)
    await _append(store, run)
    assert (await store.verify()).ok
    ((seq,),) = (
        await insider.run(
            (
                "SELECT seq FROM ledger WHERE event_id = ?",
                (next(e["event_id"] for e in run.events if e["kind"] == "node_finished"),),
            )
        )
    )[0]
    await insider.run(("UPDATE blobs SET body = replace(body, 'ORIGINAL', 'FORGED__')", ()))
    _broken(await store.verify(), seq, key, f"row {seq}'s payload commits to it", "blob was edited")
