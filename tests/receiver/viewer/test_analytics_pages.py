"""The error-group and statistics pages in real headless Chromium: groups, the run's link, SVG charts, custom metric
totals, injection."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.receiver.viewer._support import XSS, LiveReceiver, RunBuilder, failed_run, typical_run

pytestmark = pytest.mark.slow

_MINUTE_NS = 60 * 1_000_000_000
_WAIT_MS = 15_000


def _fill(live: LiveReceiver) -> list[Any]:
    base = time.time_ns() - 90 * _MINUTE_NS
    runs = [
        failed_run(start_ns=base),
        failed_run(start_ns=base + _MINUTE_NS),
        typical_run(start_ns=base + 2 * _MINUTE_NS),
        typical_run(start_ns=base + 70 * _MINUTE_NS, workflow_id="billing"),
        failed_run(start_ns=base + 71 * _MINUTE_NS, workflow_id="billing"),
    ]
    live.post([e for r in runs for e in r.events])
    return runs


def test_error_groups_page_lists_groups_and_a_run_links_to_its_group(live: LiveReceiver, page: Any) -> None:
    """The errors page shows one row per group biggest first; a failed run's page links to its highlighted group."""
    runs = _fill(live)
    page.goto(f"{live.url}/#/errors")
    page.wait_for_selector("#errors-table tbody tr[data-fingerprint]", timeout=_WAIT_MS)
    rows = page.eval_on_selector_all(
        "#errors-table tbody tr[data-fingerprint]",
        "rows => rows.map(r => [r.dataset.fingerprint, r.querySelector('.count').textContent])",
    )
    api = live.get("/api/errors").json()["groups"]
    assert rows == [[g["fingerprint"], str(g["count"])] for g in api]
    assert rows[0][1] == "4"  # two failed order-intake runs, two failed attempts each
    page.goto(f"{live.url}/#/runs/{runs[0].run_id}")
    page.click("#error-group-link", timeout=_WAIT_MS)
    page.wait_for_selector("#errors-table tr.selected", timeout=_WAIT_MS)
    selected = page.get_attribute("#errors-table tr.selected", "data-fingerprint")
    assert selected == live.get(f"/api/runs/{runs[0].run_id}").json()["error"]["fingerprint"]
    page.click("#errors-table tr.selected td a", timeout=_WAIT_MS)
    page.wait_for_selector("#run-error", timeout=_WAIT_MS)


def test_stats_page_draws_its_charts_and_table(live: LiveReceiver, page: Any) -> None:
    """The statistics page draws an SVG bar per hour with runs and a row per workflow with a sparkline."""
    _fill(live)
    page.goto(f"{live.url}/#/stats?by=workflow&range=24h")
    page.wait_for_selector("#stats-chart svg.chart g.bar", timeout=_WAIT_MS)
    hours = {p["start"] for g in live.get("/api/stats", bucket="hour").json()["groups"] for p in g["series"]}
    assert page.eval_on_selector_all("#stats-chart svg.chart g.bar", "bars => bars.length") == len(hours) >= 2
    keys = page.eval_on_selector_all("#stats-table tbody tr", "rows => rows.map(r => r.dataset.key)")
    assert keys == ["order-intake", "billing"]
    assert page.eval_on_selector_all("#stats-table svg.spark polyline", "lines => lines.length") == 2
    page.select_option("#s-by", "node")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#stats-table tbody tr')].some(r => r.dataset.key === 'billing/price')",
        timeout=_WAIT_MS,
    )


def test_an_injected_error_message_stays_text(live: LiveReceiver, page: Any) -> None:
    """An error message holding HTML is shown as text on the errors page (no dialog, no element made)."""
    run = failed_run(start_ns=time.time_ns() - _MINUTE_NS)
    for event in run.events:
        error = event["data"].get("error")
        if error:
            error["type"] = XSS
    live.post(run.events)
    page.goto(f"{live.url}/#/errors")
    page.wait_for_selector("#errors-table tbody tr[data-fingerprint]", timeout=_WAIT_MS)
    assert XSS in page.text_content("#errors-table tbody")
    assert page.query_selector("#errors-table img") is None


def test_an_error_groups_sample_links_to_its_projects_run(live: LiveReceiver, page: Any) -> None:
    """Keys off, one run id failing in project alpha and in no project: the errors page links each sample to the
    run page of its project (``project=`` for none), which loads that run (header, attempts, an attempt's panel)
    instead of a 409."""
    run = failed_run(start_ns=time.time_ns() - _MINUTE_NS)
    alpha = [{**event, "project": "alpha"} for event in run.events]
    live.post([*alpha, *run.events])
    page.goto(f"{live.url}/#/errors")
    page.wait_for_selector("#errors-table tbody tr[data-fingerprint] td a", timeout=_WAIT_MS)
    links = page.eval_on_selector_all("#errors-table tbody td a", "links => links.map(a => a.getAttribute('href'))")
    assert sorted(links) == [f"#/runs/{run.run_id}?project={project}" for project in ("", "alpha")]
    for project in ("", "alpha"):
        page.goto(f"{live.url}/#/errors")
        page.click(f"#errors-table tbody td a[href$='project={project}']", timeout=_WAIT_MS)
        page.wait_for_selector("#run-error", timeout=_WAIT_MS)
        shown = page.query_selector(".facts [data-fact='project'] dd")
        assert (shown.text_content() if shown else "") == project
        page.wait_for_selector("#attempt-count", timeout=_WAIT_MS)
        assert page.text_content("#attempt-count") == "4 attempts"
        page.click("#failing-node", timeout=_WAIT_MS)
        page.wait_for_selector("#panel-error", timeout=_WAIT_MS)
        assert f"project={project}" in page.evaluate("location.hash")
    assert live.get(f"/api/viewer/runs/{run.run_id}").status_code == 409


_METRICS = [  # (minutes before now, labels, count, sum, min, max): the first two in different hours, one series
    (170, {"provider": "openai"}, 2, 1, 0, 1),
    (100, {"provider": "openai"}, 3, 4, 1, 2),
    (30, {"provider": XSS}, 1, 7.25, 7.25, 7.25),
]


def test_stats_page_adds_up_custom_metrics_over_their_hours(live: LiveReceiver, page: Any) -> None:
    """Below the statistics, the range's custom metrics are added up per workflow, node, name and labels over their
    hours (GET /api/metrics/custom has a row per hour), most values first; a label holding HTML stays text."""
    now = time.time_ns()
    for minutes, labels, count, total, low, high in _METRICS:
        run = RunBuilder(start_ns=now - minutes * _MINUTE_NS).start()
        run.node("ask", at_ms=0, duration_ms=40)
        run.finish(at_ms=50)
        node_finished = next(e for e in run.events if e["kind"] == "node_finished")
        metric = {"name": "provider_cache_hit", "labels": labels, "count": count, "sum": total, "min": low, "max": high}
        node_finished["data"] |= {"workflow_id": run.workflow_id, "metrics": [metric | {"value": high}]}
        live.post(run.events)
    rows = live.get("/api/metrics/custom").json()["metrics"]
    assert len(rows) == 3  # one per hour and labels: the page adds up the first two
    page.goto(f"{live.url}/#/stats?by=workflow&range=24h")
    page.wait_for_selector("#metrics-table tbody tr[data-name]", timeout=_WAIT_MS)
    cells = page.eval_on_selector_all(
        "#metrics-table tbody tr[data-name]", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert cells == [
        ["provider_cache_hit", "provider=openai", "order-intake / ask", "5", "5", "0", "2", "1"],
        ["provider_cache_hit", f"provider={XSS}", "order-intake / ask", "1", "7.25", "7.25", "7.25", "7.25"],
    ]
    assert page.query_selector("#metrics-table img") is None
