"""Regenerate the viewer screenshots of the docs: ``python -m tests.receiver.viewer.make_screenshots docs/screenshots``.

Starts a receiver on a temporary database, fills it with example runs made
event by event, and photographs the run list, one run page, the error groups
and the statistics with the custom metrics in headless Chromium (needs the browser the browser tests use).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import ViewportSize, sync_playwright

from flowledger.receiver._config import ReceiverConfig
from tests.receiver.viewer._support import RunBuilder, failed_run, start_receiver, typical_run
from tests.receiver.viewer.conftest import CHROMIUM, CHROMIUM_ARGS

_MINUTE_NS = 60 * 1_000_000_000
_VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
_WAIT_MS = 15_000


def _example_run(start_ns: int) -> RunBuilder:
    """An order run: fetch, a retried price, stock mapped over four items, an effect, a skipped notify."""
    run = RunBuilder(start_ns=start_ns, trigger="http").start(trigger_data={"order_id": "A-1042", "lines": 4})
    run.node("fetch", at_ms=0, duration_ms=38, output={"order_id": "A-1042", "skus": [7, 11, 12, 19]})
    timeout = {"type": "TimeoutError", "message": "pricing service did not answer in 2.0 s", "stack": "Traceback"}
    run.node("price", at_ms=40, duration_ms=2000, status="failed", error=timeout)
    run.node("price", at_ms=2240, duration_ms=310, attempt=2, input={"skus": [7, 11, 12, 19], "api_key": "[REDACTED]"})
    for item in range(4):
        run.node("stock", at_ms=40 + item * 6, duration_ms=420 + item * 180, item=item, output={"sku": item, "n": 3})
    run.node(
        "decide",
        at_ms=2560,
        duration_ms=95,
        output={
            "__flowledger__": "truncated",
            "preview": '{"decision": "ship", "notes": "all four lines in st',
            "original_bytes": 18_432,
            "omitted_bytes": 14_336,
        },
    )
    run.skipped("notify", at_ms=2660, reason="when: customer opted out of notifications")
    return run.finish(at_ms=2670, cost_usd=0.0184)


def _with_records(run: RunBuilder) -> RunBuilder:
    """The example run's priced attempt reports cost by category, metrics and artifacts (and the run its cost)."""
    price = [e for e in run.events if e["kind"] == "node_finished" and e["data"]["node_id"] == "price"][-1]
    breakdown = {
        "tokens_in": {"count": 1840, "usd_nanos": 5_520_000},
        "tokens_out": {"count": 412, "usd_nanos": 6_180_000},
        "external_requests:pricing-api": {"count": 2, "usd_nanos": 6_000_000},
        "penalty:retry": {"count": 1, "usd_nanos": 0},
        "penalty:timeout": {"count": 1, "usd_nanos": 700_000},
    }
    cost = {"tokens": 2252, "tool_calls": 0, "external_requests": 2, "usd": 0.0184, "breakdown": breakdown}
    price["data"] |= {
        "cost": cost,
        "workflow_id": run.workflow_id,
        "metrics": [
            {"name": "provider_cache_hit", "labels": {"provider": "openai"}, "count": 4, "sum": 3, "min": 0, "max": 1}
            | {"value": 1},
            {"name": "quote_age_s", "labels": {}, "count": 1, "sum": 42.5, "min": 42.5, "max": 42.5, "value": 42.5},
        ],
        "artifacts": [
            {"name": "quote-A-1042.pdf", "uri": "s3://quotes/2026/A-1042.pdf", "media_type": "application/pdf"}
            | {"size_bytes": 48_213, "sha256": "9f2c4e6a1b3d5f7081a2c3e4f5061728394a5b6c7d8e9f00112233445566778a"},
            {"name": "price-cache.parquet", "uri": "file:///var/cache/prices.parquet", "media_type": None}
            | {"size_bytes": 73_400_320, "sha256": None}
            | {"sha256_skipped": "73400320 bytes is over the 52428800 byte (50 MiB) hashing limit"},
        ],
    }
    run.events[-1]["data"]["cost"] = cost
    return run


_FAILURES = [
    ("fetch", "httpx.ReadTimeout", "timed out after {n}.5s"),
    (
        "fetch",
        "httpx.HTTPStatusError",
        "Server error '503 Service Unavailable' for url 'https://erp.example.com/o/{n}'",
    ),
    ("price", "KeyError", "'sku_{n}'"),
    ("post_invoice", "sqlite3.IntegrityError", "UNIQUE constraint failed: invoices.number ({n})"),
]


def _day_of_runs(now_ns: int) -> list[dict[str, object]]:
    """Runs every 20 minutes over the last day, some failing with real-looking errors (for errors and stats)."""
    events: list[dict[str, object]] = []
    for i in range(72):
        start_ns = now_ns - (24 * 60 - i * 20) * _MINUTE_NS
        workflow = ("order-intake", "invoice-sync", "order-intake", "refunds")[i % 4]
        run = RunBuilder(start_ns=start_ns, workflow_id=workflow, workflow_name=workflow.replace("-", " ").title())
        run.start()
        run.node("fetch", at_ms=0, duration_ms=40 + (i * 37) % 400)
        if i % 6 in (1, 4) or (i > 50 and i % 3 == 0):
            node, kind, message = _FAILURES[(i // 2) % len(_FAILURES)]
            error = {"type": kind, "message": message.format(n=100 + i * 7), "stack": "Traceback"}
            run.node(node, at_ms=500, duration_ms=200 + (i * 53) % 900, status="failed", error=error)
            run.finish("failed", at_ms=1200, error={**error, "node_id": node}, cost_usd=0.002 + (i % 5) * 0.001)
        else:
            run.node("price", at_ms=500, duration_ms=120 + (i * 71) % 1500)
            run.finish(at_ms=700 + (i * 71) % 1500, cost_usd=0.004 + (i % 7) * 0.0015)
        events += run.events
    return events


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        receiver = start_receiver(
            ReceiverConfig(
                db_path=Path(folder) / "flowledger.db",
                sweep_interval_s=0,
                trace_url_template="http://localhost:16686/trace/{trace_id}",
            )
        )
        try:
            base = time.time_ns() - 90 * _MINUTE_NS
            events = []
            for i in range(24):
                kind = failed_run if i % 5 == 3 else typical_run
                run = kind(
                    start_ns=base + i * 3 * _MINUTE_NS,
                    trigger=("manual", "http", "schedule")[i % 3],
                    dry_run=i % 7 == 0,
                    workflow_id=("order-intake", "invoice-sync")[i % 4 == 0],
                    workflow_name=("Order intake", "Invoice sync")[i % 4 == 0],
                )
                events += run.events
            example = _with_records(_example_run(time.time_ns() - 2 * _MINUTE_NS))
            events += example.events
            running = RunBuilder(
                start_ns=time.time_ns() - 20_000_000_000, workflow_id="invoice-sync", workflow_name="Invoice sync"
            ).start()
            running.node("fetch", at_ms=0, duration_ms=120)
            running.node_started("post_invoice", at_ms=130)
            events += running.events
            events += _day_of_runs(time.time_ns())
            receiver.post(events)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=_VIEWPORT, color_scheme="light")
                page.goto(f"{receiver.url}/")
                page.wait_for_selector("#runs-table tbody tr[data-run-id]", timeout=_WAIT_MS)
                page.wait_for_selector("[data-card=total] .value", timeout=_WAIT_MS)
                time.sleep(3)  # let the "new row" highlight fade
                page.screenshot(path=str(out / "viewer-list.png"))
                page.goto(f"{receiver.url}/#/runs/{example.run_id}")
                page.wait_for_selector(".wf-row[data-span]", timeout=_WAIT_MS)
                page.click(".wf-row[data-node=decide]")
                page.wait_for_selector("[data-payload=Output] [data-marker=truncated]", timeout=_WAIT_MS)
                time.sleep(0.5)
                page.screenshot(path=str(out / "viewer-run.png"))
                page.click(".wf-row[data-node=price][data-status=succeeded]")
                page.wait_for_selector("#panel-artifacts", timeout=_WAIT_MS)
                time.sleep(0.5)
                page.screenshot(path=str(out / "viewer-run-records.png"), full_page=True)
                page.goto(f"{receiver.url}/#/errors")
                page.wait_for_selector("#errors-table tbody tr[data-fingerprint]", timeout=_WAIT_MS)
                time.sleep(0.5)
                page.screenshot(path=str(out / "viewer-errors.png"))
                page.goto(f"{receiver.url}/#/stats?by=workflow&range=24h")
                page.wait_for_selector("#stats-chart svg.chart g.bar", timeout=_WAIT_MS)
                page.wait_for_selector("#metrics-table tbody tr[data-name]", timeout=_WAIT_MS)
                time.sleep(0.5)
                page.screenshot(path=str(out / "viewer-stats.png"), full_page=True)  # the custom metrics below
                browser.close()
        finally:
            receiver.stop()
    names = ("viewer-list.png", "viewer-run.png", "viewer-run-records.png", "viewer-errors.png", "viewer-stats.png")
    print("wrote " + ", ".join(str(out / name) for name in names))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
