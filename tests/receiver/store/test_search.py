"""The text a payload is indexed under (orjson's fast path writes exactly what the json-module path writes), and
the index kept equal to the texts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from flowledger._wire import EventKind
from flowledger.receiver._config import IngestLimits
from flowledger.receiver.ingest._batch import decode_batch
from flowledger.receiver.store._migrations import MIGRATIONS
from flowledger.receiver.store._protocol import PurgeSelection, RunQuery
from flowledger.receiver.store._search import (
    SEARCH_INDEX_BY_STATEMENT,
    SEARCH_TEXT_MAX_CHARS,
    SearchSource,
    payload_text,
    texts_of_event,
)
from flowledger.receiver.store._sqlite import SqliteStore
from tests._json_values import json_values
from tests.receiver._support import simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared

_json_values = json_values()
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


def _index_is_whole(path: Path) -> None:
    """FTS5's own check that the index holds exactly the texts of search_text (rank 1: against the content)."""
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO search_fts (search_fts, rank) VALUES ('integrity-check', 1)")


async def _runs_matching(store: SqliteStore, text: str) -> set[str]:
    page = await store.list_runs(RunQuery(search=text, limit=100))
    return {run["run_id"] for run in page.runs}


def test_texts_are_indexed_per_batch_and_the_index_migrated_whole(tmp_path: Path) -> None:
    """A database indexed by the old trigger is migrated with its texts searchable; errors, payloads and log lines
    ingested afterwards are indexed by one statement per batch, a purge takes them out, and FTS5's integrity check
    finds the index equal to the texts at every step."""
    path = tmp_path / "search.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[: MIGRATIONS.index(SEARCH_INDEX_BY_STATEMENT)]:
        if isinstance(step, str):
            conn.executescript(step)
        else:
            step(conn)
    conn.execute(f"PRAGMA user_version = {MIGRATIONS.index(SEARCH_INDEX_BY_STATEMENT)}")
    conn.execute("INSERT INTO search_text (run_id, source, text) VALUES ('old-run', 'error', 'KeyError: warehouse')")
    conn.close()
    failed = typical_run().logs("stock", ["reserved pallets", "conveyor jammed"])
    kept = simple_run()

    async def scenario() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            _index_is_whole(path)
            with sqlite3.connect(path) as check:
                assert check.execute("SELECT rowid FROM search_fts WHERE search_fts MATCH ?", ["warehouse"]).fetchall()
            await store.append(prepared(failed.events))
            await store.append(prepared(kept.events))
            _index_is_whole(path)
            assert await _runs_matching(store, "jammed") == {failed.run_id}
            assert await _runs_matching(store, "price broke") == {failed.run_id}
            assert await _runs_matching(store, "decision") == {failed.run_id, kept.run_id}
            await store.purge(PurgeSelection(run_ids=(failed.run_id,), by="test"))
            _index_is_whole(path)
            assert await _runs_matching(store, "jammed") == set()
            assert await _runs_matching(store, "decision") == {kept.run_id}
        finally:
            await store.close()

    asyncio.run(scenario())
