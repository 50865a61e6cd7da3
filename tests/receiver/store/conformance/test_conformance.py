"""The Store conformance suite: what every engine of the ``Store`` protocol must do.

Written against the protocol only (events go in through ``append``, answers
come out of its query methods) and run for every engine in ``ENGINES``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import replace

import pytest

from flowledger._exceptions import QueryError, UnstorableError
from flowledger._wire import NodeStatus, RunStatus, TriggerType, format_ts
from flowledger.receiver.store._protocol import EventOutcome, RunQuery, Store
from flowledger.receiver.store._spans import SpanRow
from flowledger.receiver.store._viewer_query import FACET_WORKFLOWS_MAX
from flowledger.receiver.store._views import PageDirection, PayloadKind, RunFilter, RunMode
from tests.receiver._support import Producer, RunEvents, simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_FAR_FUTURE = format_ts(4_000_000_000 * 1_000_000_000)


async def _append(store: Store, *runs: RunEvents) -> None:
    outcomes = await store.append(prepared([e for run in runs for e in run.events]))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}


# --- append: exactly once ---------------------------------------------------------


async def test_append_stores_each_event_once(store: Store) -> None:
    """New events are accepted; the same events again are duplicates; a changed body under a stored id conflicts."""
    run = simple_run()
    first = await store.append(prepared(run.events))
    assert [outcome for outcome, _ in first] == [EventOutcome.ACCEPTED] * len(run.events)
    again = await store.append(prepared(run.events))
    assert [outcome for outcome, _ in again] == [EventOutcome.DUPLICATE] * len(run.events)
    changed = {**run.events[1], "ts": format_ts(time.time_ns())}
    [(outcome, reason)] = await store.append(prepared([changed]))
    assert outcome is EventOutcome.CONFLICT
    assert reason is not None
    assert run.events[1]["event_id"] in reason
    assert (await store.stats()).ledger_events == len(run.events)


async def test_an_event_the_engine_cannot_keep_raises_unstorable_and_stores_nothing(store: Store) -> None:
    """append raises UnstorableError (not a retryable StoreError) for a value it cannot keep; nothing is stored."""
    events = prepared(simple_run().events)
    events[-1].data["duration_ms"] = 1e300  # past validation: no finish time can be computed from it
    with pytest.raises(UnstorableError):
        await store.append(events)
    assert (await store.stats()).ledger_events == 0
    assert [outcome for outcome, _ in await store.append(events[:-1])] == [EventOutcome.ACCEPTED] * 3


async def test_a_batch_with_a_repeated_event_stores_it_once(store: Store) -> None:
    """Within one batch the second copy of an event is a duplicate."""
    run = simple_run()
    outcomes = await store.append(prepared([*run.events, run.events[0]]))
    assert [outcome for outcome, _ in outcomes][-1] is EventOutcome.DUPLICATE
    assert (await store.stats()).ledger_events == len(run.events)


# --- fold ----------------------------------------------------------------------------


async def test_a_nul_in_an_error_stack_is_read_back_not_an_error(store: Store) -> None:
    """A stack trace holding U+0000 is stored and read back, never a failed read.

    The ledger keeps the bytes as sent; what the run's detail shows differs: SQLite's JSON text ends the value
    at the NUL, PostgreSQL's text cannot hold one and shows U+FFFD there."""
    run = simple_run()
    failed = next(e for e in run.events if e["kind"] == "node_finished")
    failed["data"] = {**failed["data"], "status": "failed", "output": None}
    failed["data"]["error"] = {"type": "ValueError", "message": "bad byte", "stack": "line 1\x00line 2"}
    await _append(store, run)
    got = await store.get_run(run.run_id)
    assert got is not None
    [stack] = [n["error"]["stack"] for n in got["nodes"] if n["error"]]
    assert stack in {"line 1", "line 1\ufffdline 2"}


async def test_a_nul_in_a_log_line_error_node_id_or_attribute_stores_the_whole_batch(store: Store) -> None:
    """U+0000 in a log line, an error message, a node id and an attribute value: every event of the batch is
    stored and folded, the other run's too (PostgreSQL's text cannot hold a NUL: what it folds has U+FFFD
    there; the ledger keeps the bytes as sent on both engines)."""
    other = simple_run()
    run = RunEvents().start(attributes={"region": "eu\x00west", "tier": "gold"}).node("fe\x00tch", status="failed")
    run.logs("fe\x00tch", ["nulword first\x00line"])
    run.finish("failed", error_node="fe\x00tch")
    for event in run.events:
        if event["kind"] == "node_finished":
            event["data"]["error"]["message"] = "nulerror bro\x00ke"
    outcomes = await store.append(prepared([*other.events, *run.events]))
    assert [outcome for outcome, _ in outcomes] == [EventOutcome.ACCEPTED] * (len(other.events) + len(run.events))
    done = await store.get_run(other.run_id)
    assert done is not None
    assert done["status"] == RunStatus.SUCCEEDED.value
    got = await store.get_run(run.run_id)
    assert got is not None
    assert got["status"] == RunStatus.FAILED.value
    [node] = got["nodes"]
    assert node["node_id"] in {"fe\x00tch", "fe\ufffdtch"}
    assert node["error"]["message"] in {"nulerror bro\x00ke", "nulerror bro\ufffdke"}
    for word in ("nulword", "nulerror"):
        assert [r["run_id"] for r in (await store.list_runs(RunQuery(search=word))).runs] == [run.run_id], word
    tagged = await store.list_runs(RunQuery(attributes=(("tier", "gold"),)))
    assert [r["run_id"] for r in tagged.runs] == [run.run_id]
    assert (await store.stats()).ledger_events == len(other.events) + len(run.events)
    assert (await store.verify()).ok
    assert (await store.rebuild()).clean


async def test_an_escaped_backslash_before_u0000_is_text_not_a_nul(store: Store) -> None:
    """A backslash followed by ``u0000`` in a value (written ``\\\\u0000`` in the JSON text, no NUL in it) reads
    back unchanged from the run's detail, the viewer's payloads and the attributes; a real NUL right after a
    backslash is still a NUL (U+FFFD where the engine's text cannot hold one, as on PostgreSQL)."""
    text = "regex \\u0000 and \\\\u0000x \\\\\\u0000"  # backslash runs of 1, 2 and 3 before the u0000
    nul = "slash\\\x00nul"  # a backslash, then a real NUL
    run = RunEvents().start(trigger_data={"v": text, "n": nul}, attributes={"a": text})
    run.node("fetch", output={"v": text, "n": nul}).finish()
    await _append(store, run)
    got = await store.get_run(run.run_id)
    assert got is not None
    [node] = got["nodes"]
    for payload in (got["input"], node["output"]):
        assert payload["v"] == text
        assert payload["n"] in {nul, "slash\\\ufffdnul"}
    assert got["attributes"]["a"] == text
    viewed_input = await store.run_payload(run.run_id, PayloadKind.INPUT, project=None)
    assert viewed_input is not None
    assert json.loads(viewed_input)["v"] == text
    viewed_output = await store.node_payload(run.run_id, node["span_id"], PayloadKind.OUTPUT, project=None)
    assert viewed_output is not None
    assert json.loads(viewed_output)["v"] == text
    tagged = await store.list_runs(RunQuery(attributes=(("a", text),)))
    assert [r["run_id"] for r in tagged.runs] == [run.run_id]


async def test_a_typical_run_folds_to_its_final_state(store: Store) -> None:
    """Retries, mapped items, a skipped node, costs and the failure all reach the run and its nodes."""
    run = typical_run()
    await _append(store, run)
    got = await store.get_run(run.run_id)
    assert got is not None
    assert got["status"] == RunStatus.FAILED.value
    assert got["workflow_id"] == "order-intake"
    assert got["error"]["node_id"] == "price"
    assert got["input"] == {"order": 42, "password": "[REDACTED]"}
    assert got["output"] == {"decision": "ship"}
    assert got["cost"]["tokens"] == 1200
    nodes = [(n["node_id"], n["attempt"], n["item"], n["status"]) for n in got["nodes"]]
    assert nodes == [
        ("fetch", 1, None, NodeStatus.SUCCEEDED.value),
        ("price", 1, None, NodeStatus.FAILED.value),
        ("price", 2, None, NodeStatus.SUCCEEDED.value),
        ("stock", 1, 0, NodeStatus.SUCCEEDED.value),
        ("stock", 1, 1, NodeStatus.SUCCEEDED.value),
        ("notify", 1, None, NodeStatus.SKIPPED.value),
    ]
    failed = got["nodes"][1]
    assert failed["error"] == {"type": "ValueError", "message": "price broke", "stack": "Traceback ..."}
    assert failed["input"] == {"node": "price", "item": None}


async def test_arrival_order_and_duplicates_do_not_change_the_result(store: Store) -> None:
    """Events in reverse order, batch by batch, with duplicates, fold to what in-order delivery gives."""
    producer = Producer()
    runs = [typical_run(producer), simple_run(producer)]
    events = [e for run in runs for e in run.events]
    for event in reversed(events):
        await store.append(prepared([event, event]))
    reference = [await store.get_run(run.run_id) for run in runs]
    assert reference[0] is not None
    assert reference[0]["status"] == RunStatus.FAILED.value
    assert reference[1] is not None
    assert reference[1]["status"] == RunStatus.SUCCEEDED.value
    assert len(reference[0]["nodes"]) == 6
    drift = await store.rebuild()
    assert drift.clean, drift.as_json()
    assert [await store.get_run(run.run_id) for run in runs] == reference


async def test_a_finished_run_stays_finished(store: Store) -> None:
    """A late heartbeat after run_finished does not reopen the run."""
    run = simple_run()
    run.heartbeat()
    await _append(store, run)
    got = await store.get_run(run.run_id)
    assert got is not None
    assert got["status"] == RunStatus.SUCCEEDED.value


async def test_a_later_conflicting_finish_never_flips_a_run(store: Store) -> None:
    """Whatever the arrival order, the run_finished that finished first decides; the other shows as a conflict."""
    run = simple_run()
    run.finish("failed", error_node="fetch")
    events = prepared(run.events)
    await store.append(events[-1:])
    await store.append(events[:-1])
    got = await store.get_run(run.run_id)
    assert got is not None
    assert got["status"] == RunStatus.SUCCEEDED.value
    assert got["finish_conflicts"] == [RunStatus.FAILED.value]
    assert (await store.stats()).ledger_events == len(events)


# --- queries -------------------------------------------------------------------------


async def test_listings_page_newest_first_and_filter(store: Store) -> None:
    """list_runs pages newest first with a total; workflow and status filters narrow it; iter_runs streams all."""
    runs = [simple_run(workflow_id="alpha") for _ in range(5)] + [typical_run(workflow_id="beta") for _ in range(3)]
    await _append(store, *runs)
    newest_first = sorted(runs, key=lambda r: (r.started_at, r.run_id), reverse=True)
    first = await store.list_runs(RunQuery(limit=3))
    second = await store.list_runs(RunQuery(limit=3, offset=3))
    assert first.total == second.total == 8
    assert [r["run_id"] for r in first.runs + second.runs] == [r.run_id for r in newest_first[:6]]
    alpha = await store.list_runs(RunQuery(workflow_id="alpha"))
    assert alpha.total == 5
    assert {r["workflow_id"] for r in alpha.runs} == {"alpha"}
    failed = await store.list_runs(RunQuery(statuses=(RunStatus.FAILED,)))
    assert failed.total == 3
    assert {r["status"] for r in failed.runs} == {"failed"}
    either = await store.list_runs(RunQuery(statuses=(RunStatus.FAILED, RunStatus.SUCCEEDED)))
    assert either.total == 8
    streamed = [run async for run in store.iter_runs(RunQuery(workflow_id="beta"), with_nodes=True)]
    assert [r["run_id"] for r in streamed] == [r.run_id for r in newest_first if r.workflow_id == "beta"]
    assert all(len(r["nodes"]) == 6 for r in streamed)
    assert await store.get_run("no-such-run") is None


async def test_cursor_pages_cover_every_run_once_in_order(store: Store) -> None:
    """Following next from page to page lists every matching run once, newest first, runs without a start last."""
    runs = [simple_run(workflow_id="alpha") for _ in range(7)] + [typical_run(workflow_id="alpha") for _ in range(4)]
    orphans = [RunEvents(workflow_id="alpha").node("fetch") for _ in range(2)]  # no run_started: no start time
    await _append(store, *runs, *orphans)
    listed = await store.list_runs(RunQuery(limit=100))
    assert [r["run_id"] for r in listed.runs][-2:] == sorted((r.run_id for r in orphans), reverse=True)
    for statuses in ((), (RunStatus.FAILED, RunStatus.SUCCEEDED), (RunStatus.FAILED,)):
        expected = [r["run_id"] for r in listed.runs if not statuses or r["status"] in {s.value for s in statuses}]
        seen: list[str] = []
        page = await store.list_runs(RunQuery(statuses=statuses, limit=3))
        seen += [r["run_id"] for r in page.runs]
        while page.next is not None:
            page = await store.list_runs(RunQuery(statuses=statuses, limit=3, cursor=page.next))
            seen += [r["run_id"] for r in page.runs]
            assert page.total == len(expected)
            assert not page.total_capped
        assert seen == expected, statuses
    skipped = await store.list_runs(RunQuery(limit=2, offset=1, cursor=(await store.list_runs(RunQuery(limit=2))).next))
    assert [r["run_id"] for r in skipped.runs] == [r["run_id"] for r in listed.runs[3:5]]


async def test_listings_are_scoped_to_a_project(store: Store) -> None:
    """A listing for a project holds only that project's runs."""
    await _append(store, simple_run(project="alpha"), simple_run(project="beta"), simple_run(project="beta"))
    page = await store.list_runs(RunQuery(project="beta"))
    assert page.total == 2
    assert {r["project"] for r in page.runs} == {"beta"}


# --- the viewer's queries ------------------------------------------------------------


async def test_viewer_pages_in_both_directions(store: Store) -> None:
    """viewer_runs pages older with cursors, and back newer to the same page; filters narrow it."""
    runs = [simple_run() for _ in range(5)]
    await _append(store, *runs)
    everything = RunFilter()
    first = await store.viewer_runs(everything, limit=2)
    assert first.newer is None
    assert first.older is not None
    second = await store.viewer_runs(everything, limit=2, cursor=first.older)
    third = await store.viewer_runs(everything, limit=2, cursor=second.older)
    assert third.older is None
    assert len(third.runs) == 1
    back = await store.viewer_runs(everything, limit=2, cursor=third.newer, direction=PageDirection.NEWER)
    assert back.runs == second.runs
    ids = [r["run_id"] for r in first.runs + second.runs + third.runs]
    assert ids == [r.run_id for r in sorted(runs, key=lambda r: (r.started_at, r.run_id), reverse=True)]
    live = RunFilter(trigger=TriggerType.MANUAL, mode=RunMode.LIVE, status=RunStatus.SUCCEEDED)
    assert len((await store.viewer_runs(live, limit=10)).runs) == 5
    assert (await store.viewer_runs(RunFilter(mode=RunMode.DRY), limit=10)).runs == []


async def test_summary_and_facets(store: Store) -> None:
    """Summary cards count every matching run; facets list the workflows seen; ledger_size grows."""
    assert await store.ledger_size() == 0
    await _append(store, simple_run(workflow_id="alpha"), typical_run(workflow_id="beta"))
    cards = await store.run_summary(RunFilter())
    assert cards["total"] == 2
    assert cards["by_status"][RunStatus.SUCCEEDED.value] == 1
    assert cards["by_status"][RunStatus.FAILED.value] == 1
    assert cards["success_rate"] == pytest.approx(0.5)
    assert cards["duration_sample"] == 2
    assert (await store.run_summary(RunFilter(workflow_id="alpha")))["total"] == 1
    facets = await store.facets(project=None)
    assert facets["workflows"] == ["alpha", "beta"]
    assert facets["workflows_capped"] is False
    assert facets["statuses"] == [s.value for s in RunStatus]
    assert await store.ledger_size() == (await store.stats()).ledger_events


async def test_summary_counts_stay_exact_through_updates_sweeps_and_rebuilds(store: Store) -> None:
    """Cards without a time range (kept counts) equal the same cards counted over the runs, whatever happened."""
    _EPOCH = "1970-01-01T00:00:00.000000Z"

    async def check() -> None:
        for run_filter in (
            RunFilter(),
            RunFilter(workflow_id="alpha"),
            RunFilter(status=RunStatus.FAILED),
            RunFilter(mode=RunMode.LIVE, trigger=TriggerType.MANUAL),
            RunFilter(project="p"),
        ):
            kept = await store.run_summary(run_filter)
            counted = await store.run_summary(replace(run_filter, since=_EPOCH))  # a time range: counted
            for key in ("total", "by_status", "dry_run", "live", "total_cost_usd_nanos"):
                assert kept[key] == counted[key], (run_filter, key)

    running = RunEvents(workflow_id="alpha", project="p").start().node("fetch")
    await _append(store, simple_run(workflow_id="alpha"), typical_run(workflow_id="beta"), running)
    await check()
    finished = running.finish("failed", error_node="fetch").events[-1]
    assert [o for o, _ in await store.append(prepared([finished]))] == [EventOutcome.ACCEPTED]  # its row replaced
    await check()
    silent = RunEvents(workflow_id="alpha").start()
    await _append(store, silent)
    assert await store.sweep(now=_FAR_FUTURE, stuck_after_s=60.0, heartbeats=3) == [silent.run_id]
    await check()
    assert (await store.rebuild()).clean
    await check()
    assert (await store.run_summary(RunFilter()))["total"] == 4


async def test_one_run_its_attempts_and_payloads(store: Store) -> None:
    """run_header, attempts_page, attempt_detail and the payload reads answer for a run, None for an unknown one."""
    run = typical_run(project="alpha")
    await _append(store, run)
    header = await store.run_header(run.run_id, project=None)
    assert header is not None
    assert header["attempts"]["total"] == 6
    assert header["attempts"]["failing_node_id"] == "price"
    assert header["input"] == {"order": 42, "password": "[REDACTED]"}
    assert await store.run_header(run.run_id, project="beta") is None
    page = await store.attempts_page(run.run_id, project=None, offset=1, limit=2)
    assert page is not None
    assert page["total"] == 6
    assert [(a["node_id"], a["attempt"]) for a in page["attempts"]] == [("price", 1), ("price", 2)]
    span_id = page["attempts"][0]["span_id"]
    detail = await store.attempt_detail(run.run_id, span_id, project=None)
    assert detail is not None
    assert detail["index"] == 1
    assert detail["error"]["message"] == "price broke"
    assert await store.node_payload(run.run_id, span_id, PayloadKind.INPUT, project=None) is not None
    assert await store.node_payload(run.run_id, span_id, PayloadKind.ERROR_STACK, project=None) == '"Traceback ..."'
    assert await store.run_payload(run.run_id, PayloadKind.OUTPUT, project=None) is not None
    assert await store.attempts_page("no-such-run", project=None, offset=0, limit=2) is None
    assert await store.attempt_detail(run.run_id, "0000000000000000", project=None) is None
    with pytest.raises(QueryError):
        await store.node_payload(run.run_id, span_id, "secrets", project=None)  # type: ignore[arg-type]
    with pytest.raises(QueryError):
        await store.run_payload(run.run_id, PayloadKind.ERROR_STACK, project=None)


# --- ledger: verify, rebuild, stats --------------------------------------------------


async def test_verify_walks_the_chain_and_checks_checkpoints(store: Store) -> None:
    """An intact chain verifies; a checkpoint that does not match names its row."""
    empty = await store.verify()
    assert empty.ok
    assert empty.events == 0
    run = typical_run()
    await _append(store, run)
    report = await store.verify()
    assert report.ok
    assert report.events == len(run.events)
    assert report.head_seq == len(run.events)
    assert (await store.verify([(report.head_seq, report.head_hash)])).ok
    bad = await store.verify([(2, "00" * 32)])
    assert not bad.ok
    assert bad.first_bad_seq == 2


async def test_rebuild_refolds_without_drift(store: Store) -> None:
    """Rebuilding projections that match the ledger reports no drift and changes no answer."""
    runs = [typical_run(), simple_run()]
    await _append(store, *runs)
    before = [await store.get_run(run.run_id) for run in runs]
    drift = await store.rebuild()
    assert drift.clean
    assert drift.events == sum(len(run.events) for run in runs)
    assert [await store.get_run(run.run_id) for run in runs] == before


async def test_stats_count_runs_events_and_producers(store: Store) -> None:
    """Stats give runs by status (every status listed), ledger rows, producers and lost events."""
    producer = Producer()
    await _append(store, simple_run(producer), typical_run(producer), RunEvents(Producer()).start())
    stats = await store.stats()
    assert stats.runs_by_status == {
        **{s.value: 0 for s in RunStatus},
        RunStatus.SUCCEEDED.value: 1,
        RunStatus.FAILED.value: 1,
        RunStatus.RUNNING.value: 1,
    }
    assert stats.ledger_events == (await store.verify()).events
    assert stats.producers == 2
    assert stats.events_lost == 0


async def test_stats_bound_loss_per_producer_scope_to_a_project_and_find_silent_producers(store: Store) -> None:
    """A huge producer_seq counts at most its producer's events; project scopes; silent unfinished runs show."""
    hostile = RunEvents(project="alpha").start()
    hostile.events[0]["producer_seq"] = 2**63 - 1
    finished = simple_run(project="beta")
    await _append(store, hostile, finished)
    everyone = await store.stats(silent_before=format_ts(time.time_ns()))
    assert everyone.events_lost == 1
    assert everyone.producers_with_gaps == 1
    assert everyone.producers_silent_unfinished == 1
    alpha = await store.stats(project="alpha", silent_before=format_ts(time.time_ns()))
    assert (alpha.producers, alpha.ledger_events, alpha.producers_silent_unfinished) == (1, 1, 1)
    assert alpha.runs_by_status[RunStatus.RUNNING.value] == 1
    beta = await store.stats(project="beta", silent_before=format_ts(time.time_ns()))
    assert (beta.events_lost, beta.producers_silent_unfinished, beta.ledger_events) == (0, 0, 4)
    assert (await store.stats()).producers_silent_unfinished == 0  # no cutoff given


# --- the sweeper ---------------------------------------------------------------------


async def test_sweep_marks_silent_running_runs_stuck(store: Store) -> None:
    """A running run silent past the threshold is marked stuck with a reason; finished runs are left alone."""
    silent = RunEvents().start().node("fetch")
    done = simple_run()
    await _append(store, silent, done)
    assert await store.sweep(now=silent.started_at, stuck_after_s=60.0, heartbeats=3) == []
    assert await store.sweep(now=_FAR_FUTURE, stuck_after_s=60.0, heartbeats=3) == [silent.run_id]
    got = await store.get_run(silent.run_id)
    assert got is not None
    assert got["status"] == RunStatus.STUCK.value
    assert got["stuck_reason"]
    assert (await store.get_run(done.run_id) or {})["status"] == RunStatus.SUCCEEDED.value
    assert await store.sweep(now=_FAR_FUTURE, stuck_after_s=60.0, heartbeats=3) == []
    silent.finish()
    await store.append(prepared(silent.events[-1:]))
    assert (await store.get_run(silent.run_id) or {})["status"] == RunStatus.SUCCEEDED.value


async def test_sweep_trusts_the_receivers_clock_over_a_producer_clock_that_is_behind(store: Store) -> None:
    """Events stamped ten minutes in the past by a slow producer clock, just received: not stuck until silent."""
    behind = RunEvents()
    behind.clock_ns = time.time_ns() - 600 * 1_000_000_000
    behind.start().node("fetch")
    await _append(store, behind)
    now_ns = time.time_ns()
    assert await store.sweep(now=format_ts(now_ns), stuck_after_s=60.0, heartbeats=3) == []
    assert (await store.get_run(behind.run_id) or {})["status"] == RunStatus.RUNNING.value
    later = format_ts(now_ns + 120 * 1_000_000_000)  # silent by both clocks
    assert await store.sweep(now=later, stuck_after_s=60.0, heartbeats=3) == [behind.run_id]


# --- spans ---------------------------------------------------------------------------


def _span(run: RunEvents, span_id: str, *, parent: str | None, name: str, start_ns: int) -> SpanRow:
    return SpanRow(
        trace_id=run.trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=1,
        start_ns=start_ns,
        end_ns=start_ns + 5_000_000,
        status_code=0,
        status_message=None,
        service_name="shop",
        scope_name="flowledger",
        scope_version=None,
        attributes="{}",
        resource="{}",
        events="[]",
        links="[]",
        project=None,
        received_at=format_ts(time.time_ns()),
    )


async def test_spans_are_stored_once_and_joined_to_their_runs(store: Store) -> None:
    """store_spans keeps each (trace, span) once; get_trace returns them in start order, linked to runs and nodes."""
    run = simple_run()
    await _append(store, run)
    node_span = run.events[1]["data"]["span_id"]
    spans = [
        _span(run, node_span, parent=run.run_span, name="fetch", start_ns=2_000),
        _span(run, run.run_span, parent=None, name="order-intake", start_ns=1_000),
    ]
    assert await store.store_spans(spans) == 2
    assert await store.store_spans(spans) == 0
    assert await store.store_spans([]) == 0
    stored, links = await store.get_trace(run.trace_id)
    assert [s["span_id"] for s in stored] == [run.run_span, node_span]
    assert stored[1]["parent_span_id"] == run.run_span
    assert links.run_ids == [run.run_id]
    assert links.runs[run.run_span] == run.run_id
    assert links.nodes[node_span]["node_id"] == "fetch"
    assert (await store.get_trace("0" * 31 + "1"))[0] == []


async def test_the_same_span_ids_in_two_projects_are_two_spans(store: Store) -> None:
    """store_spans keys spans by (trace, span, project): another project's copy hides nothing and is kept apart."""
    run = simple_run()
    squat = dataclasses.replace(_span(run, run.run_span, parent=None, name="squat", start_ns=1), project="billing")
    real = dataclasses.replace(squat, name="real", project="shop")
    assert await store.store_spans([squat]) == 1
    assert await store.store_spans([real]) == 1
    assert await store.store_spans([real, squat]) == 0
    shop, _ = await store.get_trace(run.trace_id, project="shop")
    billing, _ = await store.get_trace(run.trace_id, project="billing")
    assert [s["name"] for s in shop] == ["real"]
    assert [s["name"] for s in billing] == ["squat"]


async def test_facets_list_the_workflows_run_most_recently_capped(store: Store) -> None:
    """Past FACET_WORKFLOWS_MAX workflows the facets list those whose latest run started last (in code point
    order) and say they are capped; a workflow run long ago and again lately is among them; per project too."""
    runs = [simple_run(workflow_id=f"wf-{i:04d}") for i in range(FACET_WORKFLOWS_MAX + 20)]
    oldest = min(runs, key=lambda run: run.clock_ns)
    again = RunEvents(workflow_id=oldest.workflow_id)
    again.clock_ns = max(run.clock_ns for run in runs) + 1_000_000_000
    again.start().node("fetch").finish()
    other = RunEvents(workflow_id="elsewhere-flow", project="elsewhere")
    other.clock_ns = min(run.clock_ns for run in runs) - 10**12  # before every other run: not among the latest
    other.start().node("fetch").finish()
    await _append(store, *runs, again, other)
    latest: dict[str, str] = {}
    for run in [*runs, again]:
        latest[run.workflow_id] = max(latest.get(run.workflow_id, ""), run.started_at)
    ranked = sorted(latest, key=lambda wf: latest[wf], reverse=True)
    facets = await store.facets(project=None)
    assert facets["workflows_capped"] is True
    assert len(facets["workflows"]) == FACET_WORKFLOWS_MAX
    assert facets["workflows"] == sorted(ranked[:FACET_WORKFLOWS_MAX])
    assert oldest.workflow_id in facets["workflows"]  # run again lately
    assert "elsewhere-flow" not in facets["workflows"]
    scoped = await store.facets(project="elsewhere")
    assert (scoped["workflows"], scoped["workflows_capped"]) == (["elsewhere-flow"], False)
