"""In real headless Chromium: the run page shows cost by category, and an attempt's metrics and artifacts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.receiver.viewer._support import XSS, LiveReceiver, RunBuilder

pytestmark = pytest.mark.slow

_WAIT_MS = 15_000
_BREAKDOWN = {
    "tokens_in": {"count": 1200, "usd_nanos": 3_600_000},
    "external_requests:stripe": {"count": 3, "usd_nanos": 90_000_000},
    "penalty:retry": {"count": 1, "usd_nanos": 0},
    "other": {"count": 0, "usd_nanos": 100_000_000},
}
_SHA = "ab" * 32


def _cells(page: Any, selector: str) -> list[list[str]]:
    rows: list[list[str]] = page.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    return rows


def test_run_page_shows_cost_by_category_metrics_and_artifacts(live: LiveReceiver, page: Any) -> None:
    """The header has the run's breakdown (exact dollars); the node panel its own, its metrics and its artifacts."""
    run = RunBuilder(start_ns=time.time_ns() - 60_000_000_000).start()
    run.node("ask", at_ms=0, duration_ms=40)
    run.finish(at_ms=50, cost_usd=0.1936)
    node_finished = next(e for e in run.events if e["kind"] == "node_finished")
    cost = {"tokens": 1200, "tool_calls": 0, "external_requests": 3, "usd": 0.1936, "breakdown": _BREAKDOWN}
    node_finished["data"] |= {
        "cost": cost,
        "workflow_id": run.workflow_id,
        "metrics": [
            {"name": "provider_cache_hit", "labels": {"provider": XSS}, "count": 2, "sum": 1, "min": 0, "max": 1}
            | {"value": 0}
        ],
        "artifacts": [
            {"name": XSS, "uri": "s3://bucket/a.json", "media_type": "application/json", "size_bytes": 2048}
            | {"sha256": _SHA},
            {"name": "huge.bin", "size_bytes": 52_428_801, "sha256": None, "sha256_skipped": "over the limit"},
        ],
    }
    run.events[-1]["data"]["cost"] = cost
    live.post(run.events)
    span = node_finished["data"]["span_id"]

    page.goto(f"{live.url}/#/runs/{run.run_id}?span={span}")
    page.wait_for_selector("#run-cost-breakdown", timeout=_WAIT_MS)
    assert _cells(page, "#run-cost-breakdown") == [  # keys in their stored (sorted) order
        ["external_requests:stripe", "3", "$0.09"],
        ["other", "", "$0.1"],
        ["penalty:retry", "1", ""],
        ["tokens_in", "1,200", "$0.0036"],
    ]
    page.wait_for_selector("#panel-artifacts", timeout=_WAIT_MS)
    assert _cells(page, "#panel-cost-breakdown") == _cells(page, "#run-cost-breakdown")
    (metric,) = _cells(page, "#panel-metrics")
    assert metric[:2] == ["provider_cache_hit", f"provider={XSS}"]
    assert metric[2] == "02 values · sum 1 · min 0 · max 1"  # the last value, then the summary below it
    shown, huge = page.eval_on_selector_all(
        "#panel-artifacts li",
        "items => items.map(i => ({name: i.dataset.artifact, meta: i.querySelector('.meta').textContent,"
        " sha: i.querySelector('.sha').textContent, sha_title: i.querySelector('.sha').title,"
        " uri: i.querySelector('.uri')?.textContent ?? null}))",
    )
    assert shown == {
        "name": XSS,
        "meta": " application/json · 2.0 KiB",
        "sha": f"sha256 {_SHA[:16]}…",
        "sha_title": _SHA,
        "uri": "s3://bucket/a.json",
    }
    assert huge["meta"] == " 50.0 MiB"
    assert huge["sha"] == "not hashed: over the limit"
    assert huge["uri"] is None
    assert page.query_selector("img") is None  # names and labels are text, never markup
