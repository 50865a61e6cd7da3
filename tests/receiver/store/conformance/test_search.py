"""The Store conformance suite, finding runs: full-text search and attribute filters answer alike on every engine."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger._wire import RunStatus
from flowledger.receiver.store._protocol import EventOutcome, PurgeSelection, RunQuery, Store
from flowledger.receiver.store._views import RunFilter
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


async def _ids(store: Store, text: str | None = None, **query: Any) -> set[str]:
    page = await store.list_runs(RunQuery(search=text, **query))
    return {run["run_id"] for run in page.runs}


async def _three(store: Store) -> dict[str, RunEvents]:
    """A run that failed at a node, one whose node logged about a refund, one carrying a customer payload."""
    failed = RunEvents().start(attributes={"region": "eu", "tier": 2, "beta": True}).node("charge", status="failed")
    failed.finish("failed", error_node="charge")
    logged = RunEvents().start(attributes={"region": "us"}).node("refund")
    logged.logs("refund", ["refund issued to acct-7781 after dispute at https://api.example.com/v1/o/7"])
    logged.finish()
    payload = RunEvents().start().node("lookup", output={"customer": "Zanzibar Trading Café", "vip": True}).finish()
    await store.append(prepared(failed.events + logged.events + payload.events))
    return {"failed": failed, "logged": logged, "payload": payload}


async def test_search_matches_errors_log_lines_and_payload_text(store: Store) -> None:
    """Each kind of text finds its run; every word must match; a word with * is a prefix; with other filters."""
    runs = await _three(store)
    assert await _ids(store, "charge broke") == {runs["failed"].run_id}
    assert await _ids(store, "dispute acct") == {runs["logged"].run_id}
    assert await _ids(store, "zanzib*") == {runs["payload"].run_id}
    assert await _ids(store, "zanzib") == set()
    assert await _ids(store, "refund zanzibar") == set()
    assert await _ids(store, "broke", statuses=(RunStatus.SUCCEEDED,)) == set()
    assert await _ids(store, "broke", statuses=(RunStatus.FAILED,)) == {runs["failed"].run_id}
    page = await store.list_runs(RunQuery(search="zanzibar"))
    assert (page.total, page.total_capped) == (1, False)


async def test_words_are_cut_and_folded_as_fts5_does(store: Store) -> None:
    """Punctuation splits words (a URL's host parts, ``acct-7781``), case and accents do not count, a word
    written with ``_`` is a phrase of its parts, a word without letters is left out; query syntax is text."""
    runs = await _three(store)
    logged, payload = runs["logged"].run_id, runs["payload"].run_id
    assert await _ids(store, "example") == {logged}
    assert await _ids(store, "7781") == {logged}
    assert await _ids(store, "acct-7781") == {logged}
    assert await _ids(store, "ZANZIBAR cafe") == {payload}
    assert await _ids(store, "café") == {payload}
    assert await _ids(store, "zanzibar_trading") == {payload}
    assert await _ids(store, "trading_zanzibar") == set()  # a phrase: in that order
    assert await _ids(store, "zanzibar_tra*") == {payload}
    assert await _ids(store, "_ dispute") == {logged}
    assert await _ids(store, "_") == set()
    for syntax in ('NEAR("refund" OR *', "refund | zanzibar", "!dispute & !zanzibar", "'refund' & 'x'"):
        assert await _ids(store, syntax) == set(), syntax  # every word, in one text
    for syntax in ("refund:*", "'refund' & 'dispute'", "(dispute) <-> acct"):
        assert await _ids(store, syntax) == {logged}, syntax


async def test_a_decomposed_word_is_found_as_it_was_stored(store: Store) -> None:
    """A word written decomposed (NFD: a letter, then its combining accent, as macOS writes names) is one word:
    searching for the stored text itself finds its run, as the composed (NFC) and unaccented spellings do; so
    does a word whose combining marks have no composed form, and a prefix ending in an accent."""
    failed = RunEvents().start().node("charge", status="failed")
    failed.events[-1]["data"]["error"]["message"] = "Zope Ze\u0301rich decomp; cha\u0301\u0302teau"
    failed.finish("failed", error_node="charge")
    other = RunEvents().start().node("charge").finish()
    await store.append(prepared(failed.events + other.events))
    for text in ("Ze\u0301rich", "Z\u00e9rich", "Zerich", "ze\u0301rich decomp", "Ze\u0301*", "cha\u0301\u0302teau"):
        assert await _ids(store, text) == {failed.run_id}, ascii(text)
    assert await _ids(store, "rich") == set()  # never the part after the accent alone


async def test_attribute_filters(store: Store) -> None:
    """attr.KEY=VALUE matches runs started with that attribute (values as text), several together, with a search."""
    runs = await _three(store)
    failed = runs["failed"].run_id
    assert await _ids(store, attributes=(("region", "eu"),)) == {failed}
    assert await _ids(store, attributes=(("region", "eu"), ("tier", "2"), ("beta", "true"))) == {failed}
    assert await _ids(store, attributes=(("region", "eu"), ("tier", "3"))) == set()
    assert await _ids(store, "dispute", attributes=(("region", "us"),)) == {runs["logged"].run_id}
    exported = [run["run_id"] async for run in store.iter_runs(RunQuery(search="zanzibar"), with_nodes=False)]
    assert exported == [runs["payload"].run_id]


async def test_long_attribute_values_are_stored_and_matched_exactly(store: Store) -> None:
    """The longest attribute key and value a filter takes, in characters of 3 and 4 UTF-8 bytes (values past an
    index entry's size on PostgreSQL), are stored with the other runs of their batch and matched exactly: a value
    one character shorter or different matches no run."""
    cjk = "".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(1024))  # 3 bytes each
    emoji = "".join(chr(0x1F300 + (i * 31) % 700) for i in range(1024))  # 4 bytes each
    key = "".join(chr(0x1F300 + i) for i in range(128))
    cjk_run = RunEvents().start(attributes={"note": cjk, key: emoji}).node("fetch").finish()
    other = RunEvents().start(attributes={"note": cjk[:-1]}).node("fetch").finish()
    plain = RunEvents().start().node("fetch").finish()
    outcomes = await store.append(prepared(cjk_run.events + other.events + plain.events))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}
    assert await _ids(store, attributes=(("note", cjk),)) == {cjk_run.run_id}
    assert await _ids(store, attributes=(("note", cjk[:-1]),)) == {other.run_id}
    assert await _ids(store, attributes=(("note", cjk[:-1] + "x"),)) == set()
    assert await _ids(store, attributes=((key, emoji),)) == {cjk_run.run_id}
    assert await _ids(store, attributes=((key, emoji), ("note", cjk))) == {cjk_run.run_id}
    assert await _ids(store, attributes=((key, cjk),)) == set()
    detail = await store.get_run(cjk_run.run_id)
    assert detail is not None
    assert detail["attributes"] == {"note": cjk, key: emoji}
    assert (await store.rebuild()).clean
    assert await _ids(store, attributes=(("note", cjk),)) == {cjk_run.run_id}
    await store.purge(PurgeSelection(run_ids=(cjk_run.run_id,), by="cli"))
    assert await _ids(store, attributes=(("note", cjk),)) == set()
    assert await _ids(store, attributes=(("note", cjk[:-1]),)) == {other.run_id}


async def test_a_run_id_search_lists_that_run(store: Store) -> None:
    """The start of a stored run id finds that run; hex that starts no id is searched as text."""
    runs = await _three(store)
    run_id = runs["logged"].run_id
    assert await _ids(store, run_id) == {run_id}
    assert await _ids(store, "ffffffff") == set()


async def test_the_viewer_searches_the_same_text(store: Store) -> None:
    """The viewer's run list and summary take the same search."""
    runs = await _three(store)
    page = await store.viewer_runs(RunFilter(text="dispute"), limit=10)
    assert [run["run_id"] for run in page.runs] == [runs["logged"].run_id]
    summary = await store.run_summary(RunFilter(text="zanzib*"))
    assert summary["total"] == 1


async def test_purge_and_rebuild(store: Store) -> None:
    """A purged run's text is found no more; a rebuild finds the same runs as before (its text is refolded)."""
    runs = await _three(store)
    before = {text: await _ids(store, text) for text in ("dispute", "zanzibar", "broke", "ship")}
    drift = await store.rebuild()
    assert drift.clean
    assert {text: await _ids(store, text) for text in before} == before
    assert await _ids(store, attributes=(("region", "eu"),)) == {runs["failed"].run_id}
    await store.purge(PurgeSelection(run_ids=(runs["logged"].run_id, runs["failed"].run_id), by="cli"))
    assert await _ids(store, "dispute") == set()
    assert await _ids(store, "broke") == set()
    assert await _ids(store, attributes=(("region", "eu"),)) == set()
    assert await _ids(store, "zanzibar") == {runs["payload"].run_id}
    await store.rebuild()
    assert await _ids(store, "dispute") == set()
    assert await _ids(store, "zanzibar") == {runs["payload"].run_id}


async def test_a_search_keeps_the_newest_hits(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cap on hits a search finds the runs of the newest matching texts only, the same on every engine,
    however many windows of older texts PostgreSQL reads to find them."""
    from flowledger.receiver.store import _search
    from flowledger.receiver.store.postgres import _search as pg_search

    for module in (_search, pg_search):
        monkeypatch.setattr(module, "SEARCH_HITS_MAX", 5)
    monkeypatch.setattr(pg_search, "SEARCH_FIRST_WINDOW", 2)  # windows of 2, 8, 32... texts
    needles: list[str] = []
    hay: list[str] = []
    for i in range(24):
        run = RunEvents().start().node("step")
        run.logs("step", [f"needle {i}" if i % 3 else f"hay {i}"]).finish()
        await store.append(prepared(run.events))  # one run at a time: its texts come after the previous run's
        (needles if i % 3 else hay).append(run.run_id)
    assert await _ids(store, "needle", limit=50) == set(needles[-5:])  # 16 matching texts, the newest 5 count
    assert await _ids(store, "hay", limit=50) == set(hay[-5:])  # 8, sparser: found over more windows
    assert await _ids(store, "hay 3", limit=50) == {hay[1]}  # an old text under the cap
