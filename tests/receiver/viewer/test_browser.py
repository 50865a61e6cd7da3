"""End to end in real headless Chromium: the list, filters, a run page, live updates, injection, a huge run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest

import flowledger
from flowledger.instrument._config import settings_from_env
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.store._viewer_query import FACET_WORKFLOWS_MAX
from tests.receiver.viewer._support import XSS, LiveReceiver, RunBuilder, failed_run, start_receiver, typical_run

pytestmark = pytest.mark.slow

_MINUTE_NS = 60 * 1_000_000_000
_WAIT_MS = 15_000
_TRUNCATED = {"__flowledger__": "truncated", "preview": "ABCDEF", "original_bytes": 10_000, "omitted_bytes": 9_994}
_TRUNCATED_AT_LEAST = {
    "__flowledger__": "truncated",
    "preview": "[1, 2",
    "original_bytes_at_least": 100_000,
    "omitted_bytes_at_least": 95_000,
}
_TRACE_TEMPLATE = "http://traces.example.invalid:16686/trace/{trace_id}"


def _rows(page: Any) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = page.eval_on_selector_all(
        "#runs-table tbody tr[data-run-id]", "rows => rows.map(r => ({id: r.dataset.runId, status: r.dataset.status}))"
    )
    return rows


def _wait_rows(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#runs-table tbody tr[data-run-id]').length === n", arg=count, timeout=_WAIT_MS
    )


def _eventually(check: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def _wait_card(page: Any, card: str, value: str) -> None:
    page.wait_for_function(
        "([card, value]) => document.querySelector(`[data-card=${card}] .value`)?.textContent === value",
        arg=[card, value],
        timeout=_WAIT_MS,
    )


def test_list_shows_cards_filters_searches_and_opens_a_run(live: LiveReceiver, page: Any) -> None:
    """The list loads newest first with summary cards; status, trigger and mode filters and search narrow it."""
    base = time.time_ns() - 60 * _MINUTE_NS
    runs = [
        typical_run(start_ns=base, trigger="manual"),
        failed_run(start_ns=base + _MINUTE_NS, trigger="http"),
        typical_run(start_ns=base + 2 * _MINUTE_NS, trigger="schedule", dry_run=True),
        failed_run(start_ns=base + 3 * _MINUTE_NS, trigger="schedule"),
        typical_run(start_ns=base + 4 * _MINUTE_NS, trigger="http", workflow_id="billing"),
    ]
    live.post([e for r in runs for e in r.events])
    page.goto(f"{live.url}/")
    _wait_rows(page, 5)
    assert [r["id"] for r in _rows(page)] == [r.run_id for r in reversed(runs)]
    _wait_card(page, "total", "5")
    assert page.text_content("[data-card=failed] .value") == "2"
    assert page.text_content("[data-card=succeeded] .value") == "3"
    assert page.text_content("[data-card=rate] .value") == "60.0 %"
    assert page.text_content("[data-card=dry] .value") == "1 / 4"

    page.select_option("#f-status", "failed")
    _wait_rows(page, 2)
    assert {r["status"] for r in _rows(page)} == {"failed"}
    assert "status=failed" in page.url
    _wait_card(page, "total", "2")

    page.select_option("#f-trigger", "schedule")
    _wait_rows(page, 1)
    assert _rows(page)[0]["id"] == runs[3].run_id

    page.click("#f-reset")
    _wait_rows(page, 5)
    page.select_option("#f-mode", "dry")
    _wait_rows(page, 1)
    assert _rows(page)[0]["id"] == runs[2].run_id

    page.click("#f-reset")
    _wait_rows(page, 5)
    page.wait_for_function("() => document.querySelectorAll('#f-workflow-list option').length === 2", timeout=_WAIT_MS)
    page.fill("#f-workflow_id", "billing")
    page.press("#f-workflow_id", "Enter")
    _wait_rows(page, 1)
    assert _rows(page)[0]["id"] == runs[4].run_id

    page.click("#f-reset")
    _wait_rows(page, 5)
    page.fill("#f-q", runs[1].run_id)
    _wait_rows(page, 1)
    page.click(f"#runs-table tr[data-run-id='{runs[1].run_id}'] a.run-link")
    page.wait_for_selector("#run-header [data-fact=status] .badge", timeout=_WAIT_MS)
    assert page.text_content("#run-header [data-fact=status] .badge") == "failed"
    assert "price broke" in page.text_content("#run-error")
    assert page.text_content("#failing-node") == "price"


def test_list_pages_with_older_and_newer(live: LiveReceiver, page: Any) -> None:
    """With a page size, Older and Newer move through the runs newest first."""
    base = time.time_ns() - 200 * _MINUTE_NS
    runs = [typical_run(start_ns=base + i * _MINUTE_NS) for i in range(120)]
    live.post([e for r in runs for e in r.events])
    newest_first = [r.run_id for r in reversed(runs)]
    page.goto(f"{live.url}/#/?limit=100")
    _wait_rows(page, 100)
    assert [r["id"] for r in _rows(page)] == newest_first[:100]
    page.click("#page-older")
    _wait_rows(page, 20)
    assert [r["id"] for r in _rows(page)] == newest_first[100:]
    page.click("#page-newer")
    _wait_rows(page, 100)
    assert [r["id"] for r in _rows(page)] == newest_first[:100]


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A receiver configured with an external trace URL template."""
    receiver = start_receiver(
        ReceiverConfig(db_path=tmp_path / "traced.db", sweep_interval_s=0, trace_url_template=_TRACE_TEMPLATE)
    )
    yield receiver
    receiver.stop()


def test_run_page_shows_waterfall_and_node_panel(traced: LiveReceiver, page: Any) -> None:
    """Header, bars per attempt (overlapping when concurrent), retries, skips, and a node panel with JSON and copy."""
    run = RunBuilder(start_ns=time.time_ns() - 10 * _MINUTE_NS).start(trigger_data={"order": 7})
    run.node("fetch", at_ms=0, duration_ms=40, output={"items": [1, 2, 3]})
    error = {"type": "TimeoutError", "message": "pricing timed out", "stack": "Traceback (most recent call last)"}
    run.node("price", at_ms=45, duration_ms=30, status="failed", error=error)
    run.node("price", at_ms=80, duration_ms=25, attempt=2, input={"sku": 7, "api_key": "[REDACTED]"})
    for item in range(3):
        run.node(
            "stock", at_ms=45 + item, duration_ms=60, item=item, output=_TRUNCATED if item < 2 else _TRUNCATED_AT_LEAST
        )
    run.skipped("notify", at_ms=110, reason="when: predicate was false")
    run.finish(at_ms=120)
    traced.post(run.events)

    page.goto(f"{traced.url}/#/runs/{run.run_id}")
    page.wait_for_function("() => document.querySelectorAll('.wf-row[data-span]').length === 7", timeout=_WAIT_MS)
    assert page.text_content("#run-header [data-fact=status] .badge") == "succeeded"
    assert page.text_content("#run-header [data-fact=trigger] dd") == "manual"
    assert page.text_content("#run-header [data-fact=duration] dd") == "120 ms"
    assert page.text_content("#attempt-count") == "7 attempts"
    assert page.text_content("#max-concurrency") == "up to 4 at once"
    link = page.query_selector("#trace-link")
    assert link.get_attribute("href") == _TRACE_TEMPLATE.replace("{trace_id}", run.trace_id)
    assert "noopener" in link.get_attribute("rel")

    labels = page.eval_on_selector_all(
        ".wf-row[data-span]", "rows => rows.map(r => r.querySelector('.wf-label').textContent)"
    )
    assert labels[:3] == ["fetch", "price", "stock[0]"]
    assert "price" in labels
    assert "priceretry 1" in labels
    skipped = page.text_content(".wf-row[data-status=skipped]")
    assert "skipped: when: predicate was false" in skipped

    spans = page.eval_on_selector_all(
        ".wf-row[data-node=stock] .bar",
        "bars => bars.map(b => [b.getBoundingClientRect().left, b.getBoundingClientRect().right])",
    )
    assert len(spans) == 3
    assert max(left for left, _ in spans) < min(right for _, right in spans), "concurrent attempts overlap in time"

    page.click(".wf-row[data-node=price][data-status=failed]")
    page.wait_for_selector("#panel-error", timeout=_WAIT_MS)
    assert page.text_content("#panel-node") == "price"
    assert "TimeoutError" in page.text_content("#panel-error")
    assert page.text_content("#panel-location") == "shop/steps.py:10"
    page.click("#panel-error .stack summary")
    assert "Traceback" in page.text_content("#panel-error .stack pre")

    page.click(".wf-row[data-node=price][data-status=succeeded]")
    page.wait_for_function("() => !document.querySelector('#panel-error')", timeout=_WAIT_MS)
    page.wait_for_selector("[data-payload=Input] .j-redacted", timeout=_WAIT_MS)
    page.click("[data-payload=Input] button.copy")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert json.loads(copied) == {"sku": 7, "api_key": "[REDACTED]"}
    page.click("[data-payload=Input] summary")  # collapse the object
    assert not page.is_visible("[data-payload=Input] .j-redacted")

    page.click(".wf-row[data-node=stock] >> nth=0")
    page.wait_for_selector("[data-payload=Output] [data-marker=truncated]", timeout=_WAIT_MS)
    marker = page.text_content("[data-payload=Output] [data-marker=truncated]")
    assert "truncated" in marker
    assert "10,000 bytes originally" in marker
    assert "ABCDEF" in marker

    page.click(".wf-row[data-node=stock] >> nth=2")
    page.wait_for_selector("[data-payload=Output] [data-marker=truncated] >> text=at least", timeout=_WAIT_MS)
    marker = page.text_content("[data-payload=Output] [data-marker=truncated]")
    assert "at least 100,000 bytes originally" in marker
    assert "at least 95,000 bytes left out" in marker
    assert "span=" in page.url


def test_running_run_finishes_live_and_new_runs_appear(live: LiveReceiver, page: Any) -> None:
    """A run made with the SDK shows up in an open list, and its open run page follows it to the end unreloaded."""
    gate = threading.Event()
    entered = threading.Event()

    @flowledger.node
    def fetch(order: dict[str, Any]) -> dict[str, Any]:
        return {"order": order, "lines": 2}

    @flowledger.node
    def wait_for_stock(order: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        gate.wait(30)
        return {"in_stock": True}

    def workflow() -> None:
        with flowledger.run("live-intake", name="Live intake", data={"order": 1}):
            wait_for_stock(fetch({"id": 1}))

    before = flowledger.configure()
    # Every setting from the environment (not whatever an earlier test left), pointed at this receiver.
    fresh = settings_from_env()
    settings = {f.name: getattr(fresh, f.name) for f in fields(fresh)}
    settings.update(endpoint=live.url, batch_max_age_s=0.05, export_spans=False, node_start_delay_s=0.0)
    flowledger.configure(**settings)
    worker = threading.Thread(target=workflow)
    try:
        page.goto(f"{live.url}/")
        page.wait_for_selector("#runs-table tr.empty", timeout=_WAIT_MS)
        worker.start()
        assert entered.wait(10)
        assert flowledger.flush(timeout_s=5)
        assert _eventually(lambda: live.get("/api/viewer/runs").json()["runs"]), "the SDK's run never arrived"
        _wait_rows(page, 1)  # the open list shows the new run without a reload
        assert _rows(page)[0]["status"] == "running"
        page.evaluate("() => { window.__still_this_page = true; }")
        page.click("#runs-table a.run-link")
        page.wait_for_selector(".wf-row[data-node=wait_for_stock][data-status=running]", timeout=_WAIT_MS)
        assert page.text_content("#run-header [data-fact=status] .badge") == "running"
        assert page.is_visible("#live")
        gate.set()
        worker.join(10)
        assert flowledger.flush(timeout_s=5)
        page.wait_for_function(
            "() => document.querySelector('#run-header [data-fact=status] .badge').textContent === 'succeeded'",
            timeout=_WAIT_MS,
        )
        page.wait_for_selector(".wf-row[data-node=wait_for_stock][data-status=succeeded]", timeout=_WAIT_MS)
        assert page.evaluate("() => window.__still_this_page") is True
    finally:
        gate.set()
        if worker.is_alive():
            worker.join(10)
        flowledger.configure(**{f.name: getattr(before, f.name) for f in fields(before)})


def test_injected_html_stays_text_everywhere(live: LiveReceiver, page: Any) -> None:
    """Markup in workflow names, node ids, payloads and errors is shown as text: no element made, no script run."""
    run = RunBuilder(workflow_id="evil", workflow_name=XSS).start(trigger_data={"html": XSS})
    run.node(XSS, at_ms=0, duration_ms=5, input={XSS: XSS}, output=[XSS])
    run.node("price", at_ms=6, duration_ms=5, status="failed", error={"type": XSS, "message": XSS, "stack": XSS})
    run.skipped("notify", at_ms=12, reason=XSS)
    run.finish("failed", at_ms=20, error={"type": XSS, "message": XSS, "node_id": XSS})
    live.post(run.events)

    page.goto(f"{live.url}/")
    _wait_rows(page, 1)
    assert XSS in page.text_content("#runs-table tbody")
    page.goto(f"{live.url}/#/runs/{run.run_id}")
    page.wait_for_function("() => document.querySelectorAll('.wf-row[data-span]').length === 3", timeout=_WAIT_MS)
    assert XSS in page.text_content("#run-header h2")
    assert page.text_content("#run-error") == f"{XSS}: {XSS}"
    page.click(".wf-row >> nth=0")
    page.wait_for_selector("[data-payload=Input] .j-str", timeout=_WAIT_MS)
    assert page.text_content("#panel-node") == XSS
    assert XSS in page.text_content("[data-payload=Input]")
    page.click(".wf-row[data-node=price]")
    page.wait_for_selector("#panel-error", timeout=_WAIT_MS)
    assert page.text_content("#panel-error strong") == XSS
    assert XSS in page.text_content(".wf-row[data-status=skipped]")
    page.click("#run-payloads details summary >> nth=0")
    assert XSS in page.text_content("#run-payloads")
    assert page.evaluate("() => document.querySelectorAll('img, script:not([src])').length") == 0
    assert page.problems == []


def test_ten_thousand_attempts_open_paged_and_scroll_to_the_end(live: LiveReceiver, page: Any) -> None:
    """A 10,000-attempt run opens from one page of attempts, keeps few rows in the DOM, and reaches the last row."""
    attempts = 10_000
    run = RunBuilder(workflow_id="bulk", start_ns=time.time_ns() - 60 * _MINUTE_NS).start()
    for i in range(attempts):
        run.node(f"n{i:05d}", at_ms=(i // 50) * 10.0 + (i % 50) * 0.01, duration_ms=9.0, output={"i": i})
    run.finish(at_ms=(attempts // 50) * 10.0 + 5)
    live.post(run.events)

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    started = time.perf_counter()
    page.goto(f"{live.url}/#/runs/{run.run_id}")
    page.wait_for_selector(".wf-row[data-span][data-node=n00000]", timeout=_WAIT_MS)
    page.wait_for_selector("#attempt-count", timeout=_WAIT_MS)
    open_s = time.perf_counter() - started
    print(f"\n10,000-attempt run: first rows on screen {open_s * 1000:.0f} ms after navigation")
    assert page.text_content("#attempt-count") == "10,000 attempts"
    assert page.text_content("#max-concurrency") == "up to 50 at once"
    in_dom = page.evaluate("() => document.querySelectorAll('.wf-row').length")
    assert in_dom < 120, in_dom
    attempt_requests = [u for u in requests if "/attempts" in u]
    assert len(attempt_requests) == 1, attempt_requests
    assert open_s < 10  # generous: the figure that matters is printed above and in docs/viewer.md

    page.evaluate("() => { document.querySelector('#wf-scroll').scrollTop = 1e9; }")
    page.wait_for_selector(".wf-row[data-node=n09999]", timeout=_WAIT_MS)
    assert page.evaluate("() => document.querySelectorAll('.wf-row').length") < 120
    page.click(".wf-row[data-node=n09999]")
    page.wait_for_selector("[data-payload=Output] .j-num", timeout=_WAIT_MS)
    assert page.text_content("[data-payload=Output] .j-num") == "9999"
    assert len([u for u in requests if "/attempts?" in u]) <= 3

    # A link to one attempt far down the run scrolls the waterfall to it.
    span = next(e["data"]["span_id"] for e in run.events if e["data"].get("node_id") == "n07000")
    page.goto(f"{live.url}/#/runs/{run.run_id}?span={span}")
    page.wait_for_selector(".wf-row.selected[data-node=n07000]", timeout=_WAIT_MS)
    on_screen = page.evaluate(
        """() => {
            const row = document.querySelector('.wf-row.selected').getBoundingClientRect();
            const box = document.querySelector('#wf-scroll').getBoundingClientRect();
            return row.top >= box.top && row.bottom <= box.bottom;
        }"""
    )
    assert on_screen
    assert page.text_content("#panel-node") == "n07000"


def test_time_range_preset_and_new_runs_notice_on_an_older_page(live: LiveReceiver, page: Any) -> None:
    """The last-hour range keeps only recent runs; on an older page a new run is announced, not inserted."""
    old = typical_run(start_ns=time.time_ns() - 120 * _MINUTE_NS)
    recent = [typical_run(start_ns=time.time_ns() - (10 - i) * _MINUTE_NS) for i in range(3)]
    live.post(old.events + [e for r in recent for e in r.events])
    page.goto(f"{live.url}/")
    _wait_rows(page, 4)
    page.select_option("#f-range", "1h")
    _wait_rows(page, 3)
    assert old.run_id not in {r["id"] for r in _rows(page)}
    _wait_card(page, "total", "3")

    page.goto(f"{live.url}/#/?limit=2")
    _wait_rows(page, 2)
    first = [r["id"] for r in _rows(page)]
    page.click("#page-older")
    # Two rows are on the page before the older ones replace them: wait for the older page's own.
    page.wait_for_function(
        """first => {
            const ids = [...document.querySelectorAll('#runs-table tbody tr[data-run-id]')].map(r => r.dataset.runId);
            return ids.length === 2 && !ids.some(id => first.includes(id));
        }""",
        arg=first,
        timeout=_WAIT_MS,
    )
    shown = [r["id"] for r in _rows(page)]
    assert page.is_hidden("#new-runs")
    newest = typical_run()
    live.post(newest.events)
    page.wait_for_selector("#new-runs a", timeout=_WAIT_MS)
    assert [r["id"] for r in _rows(page)] == shown
    page.click("#new-runs a")
    page.wait_for_function(
        "id => document.querySelector('#runs-table tbody tr')?.dataset.runId === id",
        arg=newest.run_id,
        timeout=_WAIT_MS,
    )


def test_large_payload_loads_on_demand_and_big_arrays_expand_in_steps(live: LiveReceiver, page: Any) -> None:
    """A payload over the inline limit shows a Load button; a 1,000-item array shows 200 items, then more."""
    big = {"rows": [f"row {i}" for i in range(1_000)], "blob": "x" * 70_000}
    run = RunBuilder().start()
    run.node("load", at_ms=0, duration_ms=5, input=big, output={"n": 1000})
    run.finish(at_ms=10)
    live.post(run.events)
    page.goto(f"{live.url}/#/runs/{run.run_id}")
    page.click(".wf-row[data-node=load]")
    page.wait_for_selector("[data-payload=Input] button.load", timeout=_WAIT_MS)
    assert "KiB" in page.text_content("[data-payload=Input] button.load")
    assert page.text_content("[data-payload=Output] .j-num") == "1000"
    page.click("[data-payload=Input] button.load")
    page.wait_for_selector("[data-payload=Input] .j-more", timeout=_WAIT_MS)
    count = "() => document.querySelectorAll('[data-payload=Input] .j-children .j-children > .j-row').length"
    assert page.evaluate(count) == 200
    assert page.text_content("[data-payload=Input] .j-more") == "show 200 more of 800"
    page.click("[data-payload=Input] .j-more")
    assert page.evaluate(count) == 400


def test_api_key_form_when_the_receiver_needs_a_key(tmp_path: Path, page: Any) -> None:
    """Behind keys the page asks for one on a 401, keeps it for the tab, and shows only that project's runs."""
    receiver = start_receiver(
        ReceiverConfig(db_path=tmp_path / "keys.db", sweep_interval_s=0, api_keys={"key-a": "proj-a", "key-b": "b"})
    )
    try:
        mine, theirs = typical_run(project="proj-a"), typical_run(project="b")
        for run, key in ((mine, "key-a"), (theirs, "key-b")):
            answer = httpx.post(
                f"{receiver.url}/v1/events", json={"events": run.events}, headers={"Authorization": f"Bearer {key}"}
            )
            assert answer.json()["accepted"] == len(run.events)

        # the page and its files load without a key (they hold no data); the data routes ask for one
        page.goto(f"{receiver.url}/")
        page.wait_for_selector("#api-key", timeout=_WAIT_MS)
        page.wait_for_load_state("networkidle")
        page.problems.clear()  # the 401 the browser logs is the point of this test
        page.fill("#api-key", "key-a")
        page.click(".key-form button")
        _wait_rows(page, 1)
        assert _rows(page)[0]["id"] == mine.run_id
        assert page.evaluate("() => sessionStorage.getItem('flowledger.apiKey')") == "key-a"
    finally:
        receiver.stop()


_LARGE_SUMMARY = {
    "total": 1_000_000,
    "by_status": {"running": 12_345, "succeeded": 987_654, "failed": 123_456, "aborted": 99_999, "stuck": 88_888},
    "dry_run": 99_725,
    "live": 900_275,
    "success_rate": 0.8888,
    "p50_duration_ms": 123_456,
    "p95_duration_ms": 9_876_543,
    "duration_sample": 50_000,
    "duration_sample_capped": True,
    "total_cost_usd": 123_456.789,
    "total_cost_usd_nanos": 123_456_789_000_000,
    "last_run": None,
    "as_of": "2026-12-03T10:00:00.000000Z",
}


@pytest.mark.parametrize("width", [1280, 1440, 1600, 1920])
def test_summary_cards_hold_large_counts_inside_their_borders(live: LiveReceiver, page: Any, width: int) -> None:
    """With a million runs every card value stays inside its card and no card runs into the next one."""
    page.set_viewport_size({"width": width, "height": 900})
    page.route("**/api/viewer/summary*", lambda route: route.fulfill(json=_LARGE_SUMMARY))
    page.goto(f"{live.url}/")
    _wait_card(page, "total", "1,000,000")
    assert page.text_content("[data-card=dry] .value") == "99,725 / 900,275"
    problems = page.evaluate(
        """() => {
          const out = [];
          const cards = [...document.querySelectorAll('.card')];
          for (const card of cards) {
            const box = card.getBoundingClientRect();
            const value = card.querySelector('.value');
            const inner = value.getBoundingClientRect();
            const text = `${card.dataset.card} (${value.textContent}, ${value.scrollWidth} > ${value.clientWidth})`;
            if (value.scrollWidth > value.clientWidth + 0.5) out.push(`${text}: value cut off`);
            for (const part of value.querySelectorAll('.part')) {
              const r = part.getBoundingClientRect();
              if (r.right > box.right - 1 || r.left < box.left) out.push(`${card.dataset.card}: part outside`);
            }
            if (inner.right > box.right || inner.bottom > box.bottom) out.push(`${card.dataset.card}: value outside`);
          }
          for (let i = 1; i < cards.length; i++) {
            const a = cards[i - 1].getBoundingClientRect(), b = cards[i].getBoundingClientRect();
            const names = `${cards[i - 1].dataset.card} overlaps ${cards[i].dataset.card}`;
            if (a.top === b.top && a.right > b.left) out.push(names);
          }
          return out;
        }"""
    )
    assert problems == []


def test_counts_of_one_are_singular(live: LiveReceiver, page: Any) -> None:
    """One key, one request, one attempt: never "1 keys" or "1 requests"."""
    run = RunBuilder(start_ns=time.time_ns() - _MINUTE_NS).start(trigger_data={"order": 7})
    run.node("fetch", at_ms=0, duration_ms=40, output={"items": [1]})
    run.finish(at_ms=50)  # its cost has one external request
    live.post(run.events)
    page.goto(f"{live.url}/#/runs/{run.run_id}")
    page.wait_for_selector("#attempt-count", timeout=_WAIT_MS)
    assert page.text_content("#attempt-count") == "1 attempt"
    header = page.text_content("#run-header")
    assert "1 request" in header
    assert "1 requests" not in header
    counts = page.eval_on_selector_all(".j-count", "els => els.map(e => e.textContent.trim())")
    assert "1 key" in counts
    assert not [c for c in counts if c.startswith("1 ") and c.endswith("s")]


def test_logs_panel_filters_by_level_and_search_box_uses_full_text(live: LiveReceiver, page: Any) -> None:
    """An attempt's panel lists its log lines (repeats, exceptions, a level filter); the search box uses full text."""
    run = RunBuilder(start_ns=time.time_ns() - 5 * _MINUTE_NS).start()
    span = run.node_started("fetch", at_ms=0)
    lines = [
        {"ts": run.ts(1), "level": 20, "level_name": "INFO", "logger": "shop.steps", "message": "fetching order 7"},
        {"ts": run.ts(2), "level": 30, "level_name": "WARNING", "logger": "httpx", "message": "slow <b>answer</b>",
         "repeats": 250},
        {"ts": run.ts(3), "level": 40, "level_name": "ERROR", "logger": "shop.steps", "message": "warehouse refused",
         "exception": "Traceback (most recent call last):\nValueError: refused"},
    ]  # fmt: skip
    run._event("node_logs", {"node_id": "fetch", "span_id": span, "attempt": 1, "records": lines}, 4)
    run.node_finished("fetch", span, started_ms=0, duration_ms=10)
    run.finish(at_ms=20)
    other = RunBuilder(start_ns=time.time_ns() - 4 * _MINUTE_NS).start().finish(at_ms=5)
    live.post(run.events + other.events)

    page.goto(f"{live.url}/")
    _wait_rows(page, 2)
    page.fill("#f-q", "warehouse")
    _wait_rows(page, 1)
    assert _rows(page)[0]["id"] == run.run_id
    page.fill("#f-q", other.run_id)
    page.wait_for_function(
        "id => [...document.querySelectorAll('#runs-table tbody tr[data-run-id]')]"
        ".map(r => r.dataset.runId).join() === id",
        arg=other.run_id,
        timeout=_WAIT_MS,
    )

    page.goto(f"{live.url}/#/runs/{run.run_id}")
    page.wait_for_selector(".wf-row[data-node=fetch]", timeout=_WAIT_MS)
    page.click(".wf-row[data-node=fetch]")
    page.wait_for_function("() => document.querySelectorAll('#log-lines li').length === 3", timeout=_WAIT_MS)
    texts = page.eval_on_selector_all("#log-lines li .log-message", "els => els.map(e => e.textContent)")
    assert texts == ["fetching order 7", "slow <b>answer</b>", "warehouse refused"]  # text, never markup
    assert page.query_selector("#log-lines b") is None
    assert page.text_content("#log-lines li:nth-child(2) .repeats") == "×250"
    page.click("#log-lines li:nth-child(3) details summary")
    assert "ValueError: refused" in page.text_content("#log-lines li:nth-child(3) pre")
    page.select_option("#log-level", "warning")
    page.wait_for_function("() => document.querySelectorAll('#log-lines li').length === 2", timeout=_WAIT_MS)
    page.select_option("#log-level", "critical")
    page.wait_for_function(  # the list is cleared before the answer comes: wait for the answer's status line
        "() => document.querySelectorAll('#log-lines li').length === 0"
        " && document.querySelector('#log-status').textContent.startsWith('No log lines')",
        timeout=_WAIT_MS,
    )
    assert page.text_content("#log-status") == "No log lines at this level."


def test_the_workflow_filter_takes_a_workflow_the_capped_list_leaves_out(live: LiveReceiver, page: Any) -> None:
    """Past FACET_WORKFLOWS_MAX workflows the filter's list offers those run most recently and says it is capped;
    a workflow left out is still filtered by when its id is typed in, and one in the list when picked."""
    base = time.time_ns() - 600 * _MINUTE_NS
    runs = [
        RunBuilder(workflow_id=f"wf-{i:04d}", start_ns=base + i * 1_000_000_000).start().finish(at_ms=5.0)
        for i in range(FACET_WORKFLOWS_MAX + 5)
    ]
    live.post([e for run in runs for e in run.events])
    page.goto(f"{live.url}/")
    page.wait_for_function(
        "n => document.querySelectorAll('#f-workflow-list option').length === n",
        arg=FACET_WORKFLOWS_MAX,
        timeout=_WAIT_MS,
    )
    listed = page.eval_on_selector_all("#f-workflow-list option", "options => options.map(o => o.value)")
    assert "wf-0000" not in listed
    assert f"wf-{FACET_WORKFLOWS_MAX + 4:04d}" in listed
    assert "type any other workflow id" in (page.get_attribute("#f-workflow_id", "title") or "")
    page.fill("#f-workflow_id", "wf-0000")
    page.press("#f-workflow_id", "Enter")
    page.wait_for_function(
        "id => [...document.querySelectorAll('#runs-table tbody tr[data-run-id]')].map(r => r.dataset.runId)"
        ".join() === id",
        arg=runs[0].run_id,
        timeout=_WAIT_MS,
    )
    assert "workflow_id=wf-0000" in page.url
    page.click("#f-reset")
    page.wait_for_function("() => !location.hash.includes('workflow_id')", timeout=_WAIT_MS)
    page.wait_for_function("() => document.querySelectorAll('#f-workflow-list option').length > 0", timeout=_WAIT_MS)
    # Typed key by key, text that spells a listed id on its way to a longer one is not applied halfway.
    page.click("#f-workflow_id")
    page.keyboard.type("wf-01000", delay=20)
    assert page.input_value("#f-workflow_id") == "wf-01000"
    assert "workflow_id" not in page.evaluate("location.hash")
    page.press("#f-workflow_id", "Enter")
    page.wait_for_function("() => location.hash.includes('workflow_id=wf-01000')", timeout=_WAIT_MS)
    page.click("#f-reset")
    page.wait_for_function("() => !location.hash.includes('workflow_id')", timeout=_WAIT_MS)
    page.wait_for_function("() => document.querySelectorAll('#f-workflow-list option').length > 0", timeout=_WAIT_MS)
    # A pick from the list (Chromium's input event for it carries no inputType) applies at once.
    page.eval_on_selector(
        "#f-workflow_id", "el => { el.value = 'wf-0100'; el.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    page.wait_for_function("() => location.hash.includes('workflow_id=wf-0100')", timeout=_WAIT_MS)
    _wait_rows(page, 1)
    assert _rows(page)[0]["id"] == runs[100].run_id
    assert page.problems == []
