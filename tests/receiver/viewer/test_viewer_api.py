"""The viewer's page, files and JSON routes, against a real receiver over a socket."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from flowledger._exceptions import QueryError
from flowledger._wire import RunStatus, TriggerType
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.store import _viewer_query
from flowledger.receiver.store._migrations import MIGRATIONS, migrate
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._views import INLINE_PAYLOAD_MAX_CHARS, PageDirection, RunFilter, RunMode, RunPageCursor
from flowledger.receiver.viewer._routes import CONTENT_SECURITY_POLICY, STATIC_FILES
from flowledger.receiver.viewer._summary import SummaryCache
from tests.receiver.viewer._support import LiveReceiver, RunBuilder, failed_run, start_receiver, typical_run

_MINUTE_NS = 60 * 1_000_000_000
_T = TypeVar("_T")


def _on_store(path: Path, work: Callable[[Store], Awaitable[_T]]) -> _T:
    """Run ``work`` on the database file through a read-only SQLite store."""

    async def go() -> _T:
        store = SqliteStore(path, readonly=True)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _runs(live: LiveReceiver, count: int, **kwargs: object) -> list[RunBuilder]:
    base = time.time_ns() - count * _MINUTE_NS
    runs = [typical_run(start_ns=base + i * _MINUTE_NS, **kwargs) for i in range(count)]
    live.post([event for run in runs for event in run.events])
    return runs


# --- page and files -----------------------------------------------------------


def test_page_is_served_with_a_policy_that_forbids_inline_script(live: LiveReceiver) -> None:
    """GET / answers the viewer page with a CSP of script-src 'self' and no inline script or handler in it."""
    answer = live.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    html = answer.text
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert 'src="/viewer/' in tag
    assert not re.search(r"<script\b[^>]*>(?!\s*</script>)", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"https?://", html), "the page must not load anything from elsewhere"


def test_static_files_are_served_with_their_types_and_nothing_else(live: LiveReceiver) -> None:
    """Each viewer file comes with its media type, the CSP and an ETag; other names are 404."""
    for name, media_type in STATIC_FILES.items():
        answer = live.get(f"/viewer/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"] == media_type
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        again = httpx.get(f"{live.url}/viewer/{name}", headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304
    assert live.get("/viewer/index.html").status_code == 404
    assert live.get("/viewer/..%2F_app.py").status_code == 404
    assert "nope.js" in live.get("/viewer/nope.js").json()["error"]


def test_viewer_files_ship_inside_the_package() -> None:
    """The page and its files are package data, found through importlib.resources (so they are in the wheel)."""
    folder = resources.files("flowledger.receiver.viewer").joinpath("static")
    for name in ["index.html", *STATIC_FILES]:
        assert folder.joinpath(name).is_file(), name


def test_scripts_write_values_as_text_only() -> None:
    """No script of the viewer assigns HTML: no innerHTML, outerHTML, insertAdjacentHTML, document.write or eval."""
    folder = resources.files("flowledger.receiver.viewer").joinpath("static")
    scripts = [name for name in STATIC_FILES if name.endswith(".js")]
    assert {"app.js", "dom.js", "page.js"} <= set(scripts)
    for name in scripts:
        script = folder.joinpath(name).read_text("utf-8")
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert forbidden not in script, (name, forbidden)
        # The SVG namespace is a name, not an address: nothing is fetched from it.
        assert "http://" not in script.replace('"http:"', "").replace('"http://www.w3.org/2000/svg"', ""), name
        assert "https://" not in script.replace('"https:"', ""), name


def test_every_module_the_scripts_import_is_served() -> None:
    """Each ``import ... from "./x.js"`` of a viewer script names a file the receiver serves under /viewer/."""
    folder = resources.files("flowledger.receiver.viewer").joinpath("static")
    for name in [n for n in STATIC_FILES if n.endswith(".js")]:
        for target in re.findall(r'^import .* from "\./([^"]+)";$', folder.joinpath(name).read_text("utf-8"), re.M):
            assert target in STATIC_FILES, (name, target)


def test_viewer_routes_do_not_shadow_the_query_api(live: LiveReceiver) -> None:
    """With the viewer mounted, /api/runs, /api/runs/{id} and /healthz answer as before."""
    (run,) = _runs(live, 1)
    assert live.get("/api/runs").json()["total"] == 1
    assert live.get(f"/api/runs/{run.run_id}").json()["run_id"] == run.run_id
    assert live.get("/healthz").status_code == 200


# --- run list -----------------------------------------------------------------


def test_keyset_pages_walk_every_run_once_newest_first(live: LiveReceiver) -> None:
    """Older cursors walk all runs newest first without overlap; a newer cursor leads back to the first page."""
    runs = _runs(live, 7)
    expected = [run.run_id for run in reversed(runs)]
    seen: list[str] = []
    pages = []
    cursor = None
    while True:
        answer = live.get("/api/viewer/runs", limit=3, **({"cursor": cursor} if cursor else {})).json()
        pages.append(answer)
        seen += [run["run_id"] for run in answer["runs"]]
        cursor = answer["older"]
        if cursor is None:
            break
    assert seen == expected
    assert [len(p["runs"]) for p in pages] == [3, 3, 1]
    assert pages[0]["newer"] is None
    assert pages[1]["newer"] is not None
    back = live.get("/api/viewer/runs", limit=3, cursor=pages[2]["newer"], direction="newer").json()
    assert [r["run_id"] for r in back["runs"]] == expected[3:6]
    first = live.get("/api/viewer/runs", limit=3, cursor=pages[1]["newer"], direction="newer").json()
    assert [r["run_id"] for r in first["runs"]] == expected[:3]
    assert first["newer"] is None


def test_list_filters_by_status_trigger_mode_workflow_time_and_run_id(live: LiveReceiver) -> None:
    """Each filter narrows the list to exactly the matching runs."""
    base = time.time_ns() - 100 * _MINUTE_NS
    a = typical_run(start_ns=base, trigger="http", workflow_id="billing")
    b = failed_run(start_ns=base + 10 * _MINUTE_NS, trigger="schedule", dry_run=True)
    c = typical_run(start_ns=base + 20 * _MINUTE_NS, trigger="manual", dry_run=True)
    live.post(a.events + b.events + c.events)

    def ids(**params: object) -> set[str]:
        answer = live.get("/api/viewer/runs", **params)
        assert answer.status_code == 200, answer.text
        return {run["run_id"] for run in answer.json()["runs"]}

    assert ids() == {a.run_id, b.run_id, c.run_id}
    assert ids(status="failed") == {b.run_id}
    assert ids(trigger="http") == {a.run_id}
    assert ids(mode="dry") == {b.run_id, c.run_id}
    assert ids(mode="live") == {a.run_id}
    assert ids(workflow_id="billing") == {a.run_id}
    assert ids(since=b.ts(0)) == {b.run_id, c.run_id}
    assert ids(since=a.ts(0), until=b.ts(0)) == {a.run_id}
    assert ids(q=c.run_id[:-3].upper()) == {c.run_id}
    assert ids(q=c.run_id) == {c.run_id}
    assert ids(status="failed", mode="live") == set()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "done"}, "status='done'"),
        ({"trigger": "cron"}, "trigger='cron'"),
        ({"mode": "both"}, "mode='both'"),
        ({"since": "yesterday"}, "since='yesterday'"),
        ({"until": "2026-01-01T00:00:00"}, "until="),
        ({"limit": "0"}, "limit=0"),
        ({"limit": "many"}, "limit='many'"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        (
            {"direction": "sideways", "cursor": RunPageCursor("2026-01-01T00:00:00.000000Z", "y").encode()},
            "direction='sideways'",
        ),
        ({"workflow_id": "w" * 300}, "workflow_id"),
    ],
)
def test_bad_list_parameters_are_400s_naming_the_parameter(
    live: LiveReceiver, params: dict[str, str], named: str
) -> None:
    """A bad filter or cursor is a 400 whose message names it, never a 500."""
    answer = live.get("/api/viewer/runs", **params)
    assert answer.status_code == 400
    assert named in answer.json()["error"]
    assert live.get("/api/viewer/summary", **{k: v for k, v in params.items() if k != "cursor"}).status_code in (
        200,
        400,
    )


@pytest.mark.parametrize("route", ["/api/viewer/runs", "/api/viewer/summary"])
def test_unknown_viewer_parameters_are_400s_naming_them(live: LiveReceiver, route: str) -> None:
    """A parameter the route does not take (a misspelt filter) is a 400 naming it, not silently ignored."""
    answer = live.get(route, workflow="x")
    assert answer.status_code == 400
    assert "'workflow'" in answer.json()["error"]


@pytest.mark.parametrize("route", ["/api/viewer/runs", "/api/viewer/summary"])
def test_run_id_search_is_bounded(live: LiveReceiver, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run-id search matching more runs than the cap is a 400 saying what to type; fewer than 4 characters,
    or a search without a letter or digit, is not an id search (full text, or a 400 naming q)."""
    runs = [RunBuilder().start().finish(at_ms=10) for _ in range(3)]
    live.post([e for r in runs for e in r.events])
    short = live.get(route, q=runs[0].run_id[:3])
    assert short.status_code == 200  # searched as text
    wordless = live.get(route, q="--")
    assert wordless.status_code == 400
    assert "q=" in wordless.json()["error"]
    common = runs[0].run_id[:5]  # UUIDv7: runs started together share their first characters
    assert all(r.run_id.startswith(common) for r in runs)
    assert live.get(route, q=common[:4]).status_code == 200
    monkeypatch.setattr(_viewer_query, "RUN_ID_SEARCH_MAX_MATCHES", 2)
    broad = live.get(route, q=common)
    assert broad.status_code == 400
    assert "type more of the run id" in broad.json()["error"]
    assert live.get(route, q=runs[0].run_id).status_code == 200


def test_summary_cost_is_an_exact_sum(live: LiveReceiver) -> None:
    """Runs costing 0.1, 0.2 and 0.3 dollars total exactly 0.6 (a float sum says 0.6000000000000001);
    a noisy amount from an older SDK counts as the amount it stands for."""
    runs = [RunBuilder().start().finish(at_ms=10, cost_usd=usd) for usd in (0.1, 0.2, 0.3, 0.30000000000000004)]
    live.post([e for r in runs for e in r.events])
    cards = live.get("/api/viewer/summary").json()
    assert cards["total_cost_usd_nanos"] == 900_000_000
    assert repr(cards["total_cost_usd"]) == "0.9"
    noisy = live.get(f"/api/viewer/runs/{runs[-1].run_id}").json()
    assert repr(noisy["cost"]["usd"]) == "0.3"


def test_summary_cards_count_rates_percentiles_cost_and_last_run(live: LiveReceiver) -> None:
    """Cards over a filter: counts by status and mode, success rate, nearest-rank p50/p95, cost, last run."""
    base = time.time_ns() - 100 * _MINUTE_NS
    runs = [typical_run(start_ns=base + i * _MINUTE_NS, dry_run=i == 0) for i in range(3)]
    runs.append(failed_run(start_ns=base + 3 * _MINUTE_NS))
    running = RunBuilder(start_ns=base + 4 * _MINUTE_NS).start()
    live.post([e for r in [*runs, running] for e in r.events])
    cards = live.get("/api/viewer/summary").json()
    assert cards["total"] == 5
    assert cards["by_status"] == {"running": 1, "succeeded": 3, "failed": 1, "aborted": 0, "stuck": 0}
    assert (cards["dry_run"], cards["live"]) == (1, 4)
    assert cards["success_rate"] == pytest.approx(3 / 4)
    # durations: 130, 130, 130, 60 -> p50 is the 2nd smallest (130), p95 the 4th (130)
    assert cards["p50_duration_ms"] == pytest.approx(130)
    assert cards["p95_duration_ms"] == pytest.approx(130)
    assert cards["duration_sample"] == 4
    assert cards["duration_sample_capped"] is False
    assert cards["total_cost_usd"] == pytest.approx(4 * 0.004)
    assert (cards["last_run"]["run_id"], cards["last_run"]["project"]) == (running.run_id, running.project)
    failed = live.get("/api/viewer/summary", status="failed").json()
    assert failed["total"] == 1
    assert failed["success_rate"] == 0
    assert failed["p50_duration_ms"] == pytest.approx(60)
    empty = live.get("/api/viewer/summary", workflow_id="nothing").json()
    assert empty["total"] == 0
    assert empty["success_rate"] is None
    assert empty["last_run"] is None


def test_summary_follows_new_runs(live: LiveReceiver) -> None:
    """Cards computed once are recomputed when new events arrive (the cache keys on the ledger)."""
    _runs(live, 1)
    assert live.get("/api/viewer/summary").json()["total"] == 1
    _runs(live, 2)
    assert live.get("/api/viewer/summary").json()["total"] == 3


def test_percentiles_over_a_sample_use_the_newest_runs(tmp_path: Path) -> None:
    """With a sample cap, p50/p95 cover only the newest runs with a duration, and say how many."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0))
    try:
        base = time.time_ns() - 100 * _MINUTE_NS
        slow = [failed_run(start_ns=base + i * _MINUTE_NS) for i in range(3)]  # 60 ms each, older
        fast = [typical_run(start_ns=base + (10 + i) * _MINUTE_NS) for i in range(2)]  # 130 ms, newer
        receiver.post([e for r in slow + fast for e in r.events])
    finally:
        receiver.stop()
    full = _on_store(tmp_path / "f.db", lambda store: store.run_summary(RunFilter()))
    sampled = _on_store(tmp_path / "f.db", lambda store: store.run_summary(RunFilter(), percentile_sample_max=2))
    assert full["p50_duration_ms"] == pytest.approx(60)
    assert full["duration_sample"] == 5
    assert sampled["p50_duration_ms"] == pytest.approx(130)
    assert sampled["duration_sample"] == 2
    assert sampled["duration_sample_capped"] is True
    assert sampled["total"] == 5


def test_query_functions_reject_foreign_cursors_and_page_in_both_directions(tmp_path: Path) -> None:
    """RunPageCursor.decode refuses junk; list_runs pages newer from the middle back to the start."""
    with pytest.raises(QueryError, match="not a cursor"):
        RunPageCursor.decode("bm90IGpzb24")
    with pytest.raises(QueryError, match="not a cursor"):
        RunPageCursor.decode(RunPageCursor("a", "b").encode()[:-4] + "AAAA")
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0))
    try:
        _runs(receiver, 5, trigger="schedule")
    finally:
        receiver.stop()
    flt = RunFilter(trigger=TriggerType.SCHEDULE, mode=RunMode.LIVE, status=RunStatus.SUCCEEDED)

    async def check(store: Store) -> None:
        first = await store.viewer_runs(flt, limit=2)
        second = await store.viewer_runs(flt, limit=2, cursor=first.older)
        third = await store.viewer_runs(flt, limit=2, cursor=second.older)
        assert third.older is None
        assert len(third.runs) == 1
        back = await store.viewer_runs(flt, limit=2, cursor=third.newer, direction=PageDirection.NEWER)
        assert back.runs == second.runs
        assert (await store.viewer_runs(RunFilter(workflow_id="none"), limit=2)).runs == []

    _on_store(tmp_path / "f.db", check)


# --- one run ------------------------------------------------------------------


@pytest.fixture
def one_run(live: LiveReceiver) -> tuple[LiveReceiver, RunBuilder]:
    """A receiver holding one typical run."""
    run = typical_run()
    live.post(run.events)
    return live, run


def test_run_header_has_fields_payloads_and_an_attempt_overview(one_run: tuple[LiveReceiver, RunBuilder]) -> None:
    """GET /api/viewer/runs/{id}: the run without nodes, its trigger payload, counts, time span and concurrency."""
    live, run = one_run
    header = live.get(f"/api/viewer/runs/{run.run_id}").json()
    assert header["run_id"] == run.run_id
    assert header["status"] == "succeeded"
    assert "nodes" not in header
    assert header["input"] == {"order": 42}
    assert header["output"] == {"decision": "ship"}
    assert header["deferred"] == []
    overview = header["attempts"]
    assert overview["total"] == 7
    assert overview["by_status"] == {"running": 0, "succeeded": 5, "failed": 1, "skipped": 1}
    assert overview["failing_node_id"] == "price"
    assert overview["max_concurrency"] == 4  # price and three stock items overlap
    assert len(overview["concurrency"]) == 120
    assert overview["t1"] - overview["t0"] == pytest.approx(0.130, abs=1e-3)
    assert header["trace_url"] is None


def test_failing_node_of_a_failed_run_points_at_its_last_failed_attempt(live: LiveReceiver) -> None:
    """The overview names the node that failed the run and the span of its last failed attempt."""
    run = failed_run()
    live.post(run.events)
    overview = live.get(f"/api/viewer/runs/{run.run_id}").json()["attempts"]
    attempts = live.get(f"/api/viewer/runs/{run.run_id}/attempts").json()["attempts"]
    second_price = next(a for a in attempts if a["node_id"] == "price" and a["attempt"] == 2)
    assert overview["failing_node_id"] == "price"
    assert overview["failing_span_id"] == second_price["span_id"]


def test_attempts_are_paged_in_start_order_with_retries_and_skips(one_run: tuple[LiveReceiver, RunBuilder]) -> None:
    """Attempt pages follow start order; a retry is its own row; a skipped node carries its reason."""
    live, run = one_run
    everything = live.get(f"/api/viewer/runs/{run.run_id}/attempts").json()
    assert everything["total"] == 7
    rows = everything["attempts"]
    assert [r["started_at"] for r in rows] == sorted(r["started_at"] for r in rows)
    assert [(r["node_id"], r["attempt"]) for r in rows if r["node_id"] == "price"] == [("price", 1), ("price", 2)]
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert [(r["node_id"], r["skip_reason"]) for r in skipped] == [("notify", "when: predicate was false")]
    assert rows[0]["location"] == {"file": "shop/steps.py", "line": 10, "path": "nodes.fetch"}
    assert "input" not in rows[0]
    page = live.get(f"/api/viewer/runs/{run.run_id}/attempts", offset=2, limit=3).json()
    assert [r["span_id"] for r in page["attempts"]] == [r["span_id"] for r in rows[2:5]]
    assert live.get(f"/api/viewer/runs/{run.run_id}/attempts", limit=0).status_code == 400
    for index, row in enumerate(rows):
        assert live.get(f"/api/viewer/runs/{run.run_id}/attempts/{row['span_id']}").json()["index"] == index


def test_attempt_detail_has_payloads_and_error(live: LiveReceiver) -> None:
    """GET .../attempts/{span}: input, output, error with stack, location."""
    run = failed_run()
    live.post(run.events)
    rows = live.get(f"/api/viewer/runs/{run.run_id}/attempts").json()["attempts"]
    price = next(r for r in rows if r["node_id"] == "price")
    detail = live.get(f"/api/viewer/runs/{run.run_id}/attempts/{price['span_id']}").json()
    assert detail["input"] == {"node": "price"}
    assert detail["error"]["type"] == "ValueError"
    assert detail["error"]["stack"].startswith("Traceback")
    assert detail["deferred"] == []
    stack = live.get(f"/api/viewer/runs/{run.run_id}/attempts/{price['span_id']}/error_stack")
    assert stack.json() == detail["error"]["stack"]


def test_large_payloads_are_left_out_and_loaded_on_demand(live: LiveReceiver) -> None:
    """A payload over the inline limit is listed in ``deferred`` and served alone by the payload route."""
    big = {"rows": ["x" * 100] * (INLINE_PAYLOAD_MAX_CHARS // 100 + 10)}
    run = RunBuilder().start(trigger_data=big)
    run.node("load", at_ms=0, duration_ms=5, input=big, output={"n": 1})
    run.finish(at_ms=10, output=big)
    live.post(run.events)
    header = live.get(f"/api/viewer/runs/{run.run_id}").json()
    assert header["input"] is None
    assert header["output"] is None
    assert sorted(header["deferred"]) == ["input", "output"]
    assert live.get(f"/api/viewer/runs/{run.run_id}/payload/input").json() == big
    assert live.get(f"/api/viewer/runs/{run.run_id}/payload/output").json() == big
    (row,) = live.get(f"/api/viewer/runs/{run.run_id}/attempts").json()["attempts"]
    detail = live.get(f"/api/viewer/runs/{run.run_id}/attempts/{row['span_id']}").json()
    assert detail["deferred"] == ["input"]
    assert detail["input"] is None
    assert detail["output"] == {"n": 1}
    assert detail["payload_chars"]["input"] > INLINE_PAYLOAD_MAX_CHARS
    assert live.get(f"/api/viewer/runs/{run.run_id}/attempts/{row['span_id']}/input").json() == big


def test_unknown_runs_attempts_and_payload_kinds_are_404s(one_run: tuple[LiveReceiver, RunBuilder]) -> None:
    """Unknown ids and payload names get a 404 that names them."""
    live, run = one_run
    missing = "00000000-0000-7000-8000-000000000000"
    for path in (
        f"/api/viewer/runs/{missing}",
        f"/api/viewer/runs/{missing}/attempts",
        f"/api/viewer/runs/{missing}/payload/input",
        f"/api/viewer/runs/{run.run_id}/attempts/ffffffffffffffff",
        f"/api/viewer/runs/{run.run_id}/attempts/ffffffffffffffff/input",
        f"/api/viewer/runs/{run.run_id}/payload/secrets",
        f"/api/viewer/runs/{run.run_id}/attempts/ffffffffffffffff/secrets",
    ):
        answer = live.get(path)
        assert answer.status_code == 404, path
        assert "error" in answer.json()


def test_facets_list_the_workflows_seen(live: LiveReceiver) -> None:
    """The workflow filter offers every workflow id once, sorted."""
    live.post(typical_run(workflow_id="b-flow").events + typical_run(workflow_id="a-flow").events)
    live.post(failed_run(workflow_id="a-flow").events)
    facets = live.get("/api/viewer/facets").json()
    assert facets["workflows"] == ["a-flow", "b-flow"]
    assert facets["triggers"] == ["manual", "http", "schedule"]


def test_trace_link_follows_the_configured_template(tmp_path: Path) -> None:
    """With a trace URL template, the run header carries the filled-in trace_url."""
    receiver = start_receiver(
        ReceiverConfig(
            db_path=tmp_path / "f.db",
            sweep_interval_s=0,
            trace_url_template="http://traces.local:16686/trace/{trace_id}",
        )
    )
    try:
        run = typical_run()
        receiver.post(run.events)
        header = receiver.get(f"/api/viewer/runs/{run.run_id}").json()
    finally:
        receiver.stop()
    assert header["trace_url"] == f"http://traces.local:16686/trace/{run.trace_id}"


def test_api_keys_scope_every_viewer_route_to_the_key_project(tmp_path: Path) -> None:
    """With API keys, one project's runs are invisible to another project's key."""
    receiver = start_receiver(
        ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0, api_keys={"key-a": "proj-a", "key-b": "proj-b"})
    )
    try:
        mine = typical_run(project="proj-a")
        answer = httpx.post(
            f"{receiver.url}/v1/events", json={"events": mine.events}, headers={"Authorization": "Bearer key-a"}
        )
        assert answer.json()["accepted"] == len(mine.events)

        def get(path: str, key: str) -> httpx.Response:
            return httpx.get(f"{receiver.url}{path}", headers={"Authorization": f"Bearer {key}"})

        assert len(get("/api/viewer/runs", "key-a").json()["runs"]) == 1
        assert get("/api/viewer/runs", "key-b").json()["runs"] == []
        assert get("/api/viewer/summary", "key-b").json()["total"] == 0
        assert get("/api/viewer/facets", "key-b").json()["workflows"] == []
        assert get(f"/api/viewer/runs/{mine.run_id}", "key-b").status_code == 404
        assert get(f"/api/viewer/runs/{mine.run_id}/attempts", "key-b").status_code == 404
        span = get(f"/api/viewer/runs/{mine.run_id}/attempts", "key-a").json()["attempts"][0]["span_id"]
        assert get(f"/api/viewer/runs/{mine.run_id}/attempts/{span}", "key-b").status_code == 404
        assert get(f"/api/viewer/runs/{mine.run_id}/payload/input", "key-b").status_code == 404
        assert httpx.get(f"{receiver.url}/api/viewer/runs").status_code == 401
        public_files = ("/", "/viewer/app.js", "/viewer/page.js", "/viewer/app.css")  # no data: they load without a key
        for public in public_files:
            assert httpx.get(f"{receiver.url}{public}").status_code == 200
    finally:
        receiver.stop()


def test_migration_adds_the_viewer_indexes(live: LiveReceiver) -> None:
    """The store's schema has the covering run index and the attempt-order index the viewer pages with."""
    conn = sqlite3.connect(live.db_path)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT r.run_id FROM runs r WHERE r.trigger_type = 'http' AND r.dry_run = 1 "
                "ORDER BY r.started_at DESC, r.run_id DESC LIMIT 51"
            )
        )
    finally:
        conn.close()
    assert {"runs_facts", "node_runs_by_start"} <= names
    assert "COVERING INDEX runs_facts" in plan


def test_viewer_migration_upgrades_a_database_of_the_previous_version(tmp_path: Path) -> None:
    """A database made before the viewer gets its indexes by one migration, runs and all kept."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for script in MIGRATIONS[:2]:
            assert isinstance(script, str)
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO runs (run_id, status, started_at) VALUES ('r1', 'running', '2026-01-01T00:00:00.000000Z')"
        )
        assert migrate(conn) == len(MIGRATIONS) - 2
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert conn.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]
        # The summary's kept counts start from the runs already there.
        assert conn.execute("SELECT * FROM run_counts").fetchall() == [("", "running", "", -1, "", 1, 0, 0)]
    finally:
        conn.close()
    assert {"runs_facts", "node_runs_by_start"} <= names


def test_kept_run_counts_match_the_runs_after_every_kind_of_write(tmp_path: Path) -> None:
    """run_counts (kept by triggers) equals a count over runs after inserts, replaces, updates and deletes."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0))
    try:
        runs = [typical_run(dry_run=i % 2 == 0) for i in range(4)] + [failed_run(), RunBuilder().start()]
        receiver.post([e for r in runs for e in r.events])
        receiver.post(RunBuilder().start().finish(at_ms=5, cost_usd=0.1).events)
    finally:
        receiver.stop()
    conn = sqlite3.connect(tmp_path / "f.db", isolation_level=None)
    key = "coalesce(workflow_id, ''), status, coalesce(trigger_type, ''), coalesce(dry_run, -1), coalesce(project, '')"
    counted_sql = (
        f"SELECT {key}, count(*), sum(CAST(cost_usd AS INTEGER)), "
        "sum(CAST(round((cost_usd - CAST(cost_usd AS INTEGER)) * 1e9) AS INTEGER)) FROM runs GROUP BY 1, 2, 3, 4, 5"
    )
    kept_sql = "SELECT * FROM run_counts WHERE runs > 0 ORDER BY 1, 2, 3, 4, 5"
    try:
        assert conn.execute(kept_sql).fetchall() == [
            (*row[:6], row[6] or 0, row[7] or 0) for row in conn.execute(counted_sql + " ORDER BY 1, 2, 3, 4, 5")
        ]
        conn.execute("UPDATE runs SET status = 'stuck' WHERE status = 'running'")
        conn.execute("UPDATE runs SET cost_usd = 0.25 WHERE run_id = (SELECT min(run_id) FROM runs)")
        conn.execute("DELETE FROM runs WHERE status = 'failed'")
        assert conn.execute(kept_sql).fetchall() == [
            (*row[:6], row[6] or 0, row[7] or 0) for row in conn.execute(counted_sql + " ORDER BY 1, 2, 3, 4, 5")
        ]
    finally:
        conn.close()


def test_summary_cache_reuses_cards_until_the_ledger_grows(tmp_path: Path) -> None:
    """The same filter is answered from the cache while nothing was written, and recomputed after."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0))
    try:
        _runs(receiver, 2)
        cache = SummaryCache()

        async def twice(store: Store) -> dict[str, Any]:
            first = await cache.get(store, RunFilter())
            assert await cache.get(store, RunFilter()) is first
            assert await cache.get(store, RunFilter(status=RunStatus.FAILED)) is not first
            return first

        first = _on_store(tmp_path / "f.db", twice)
        _runs(receiver, 1)
        again = _on_store(tmp_path / "f.db", lambda store: cache.get(store, RunFilter()))
    finally:
        receiver.stop()
    assert first["total"] == 2
    assert again["total"] == 3


def test_summary_cache_reuses_slow_cards_for_a_while_even_after_new_runs(tmp_path: Path) -> None:
    """Cards that took long are reused for ten times their cost, new runs or not; cheap ones never are."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0))
    try:
        _runs(receiver, 1)
        cache = SummaryCache()
        first = _on_store(tmp_path / "f.db", lambda store: cache.get(store, RunFilter()))
        version, computed_at, _, result = cache._entries[RunFilter()]
        cache._entries[RunFilter()] = (version, computed_at, 1.0, result)  # as if it had taken a second
        _runs(receiver, 1)

        async def reuse_then_refresh(store: Store) -> tuple[dict[str, Any], dict[str, Any]]:
            reused = await cache.get(store, RunFilter())
            cache._entries[RunFilter()] = (version, computed_at, 0.001, result)
            return reused, await cache.get(store, RunFilter())

        reused, fresh = _on_store(tmp_path / "f.db", reuse_then_refresh)
    finally:
        receiver.stop()
    assert reused is first
    assert fresh["total"] == 2
