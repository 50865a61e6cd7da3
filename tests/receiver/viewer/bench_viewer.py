"""Viewer figures: ``python -m tests.receiver.viewer.bench_viewer [--runs N] [--skip-browser]``.

1. A run with 10,000 node attempts, ingested through ``POST /v1/events`` into a
   real receiver, opened in headless Chromium: time from navigation to the
   header and first waterfall rows on screen (median of 5), and time to
   scroll to the last attempt.
2. A database holding N runs (default 1,000,000; rows written straight into the
   projection, as a receiver would have folded them): the viewer's queries for
   the first page, a page deep in the list, filtered pages, and the summary cards.

Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flowledger._exceptions import QueryError
from flowledger._wire import RunStatus, TriggerType, format_ts
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._views import RunFilter, RunMode
from tests.receiver._many_runs import fill_runs
from tests.receiver.viewer._support import RunBuilder, start_receiver
from tests.receiver.viewer.conftest import CHROMIUM, CHROMIUM_ARGS

_ATTEMPTS = 10_000
_OPENS = 5


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def bench_large_run() -> None:
    with tempfile.TemporaryDirectory() as folder:
        receiver = start_receiver(ReceiverConfig(db_path=Path(folder) / "f.db", sweep_interval_s=0))
        try:
            run = RunBuilder(workflow_id="bulk").start()
            for i in range(_ATTEMPTS):
                run.node(f"n{i:05d}", at_ms=(i // 50) * 10.0 + (i % 50) * 0.01, duration_ms=9.0, output={"i": i})
            run.finish(at_ms=(_ATTEMPTS // 50) * 10.0 + 5)
            started = time.perf_counter()
            receiver.post(run.events)
            print(f"ingest of {len(run.events):,} events: {_ms(time.perf_counter() - started)}")
            for path in (f"/api/viewer/runs/{run.run_id}", f"/api/viewer/runs/{run.run_id}/attempts"):
                times = []
                for _ in range(_OPENS):
                    began = time.perf_counter()
                    receiver.get(path).raise_for_status()
                    times.append(time.perf_counter() - began)
                print(f"GET {path.replace(run.run_id, '{id}')}: median {_ms(statistics.median(times))}")
            _browser_open(receiver.url, run.run_id)
        finally:
            receiver.stop()


def _browser_open(url: str, run_id: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        opens, scrolls = [], []
        for _ in range(_OPENS):
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            began = time.perf_counter()
            page.goto(f"{url}/#/runs/{run_id}")
            page.wait_for_selector(".wf-row[data-node=n00000]")
            page.wait_for_selector("#attempt-count")
            opens.append(time.perf_counter() - began)
            began = time.perf_counter()
            page.evaluate("() => { document.querySelector('#wf-scroll').scrollTop = 1e9; }")
            page.wait_for_selector(".wf-row[data-node=n09999]")
            scrolls.append(time.perf_counter() - began)
            page.close()
        browser.close()
    print(
        f"open a {_ATTEMPTS:,}-attempt run in Chromium (navigation to rows on screen): "
        f"median {_ms(statistics.median(opens))}, max {_ms(max(opens))}"
    )
    print(f"jump to its last attempt (scroll + page fetch + render): median {_ms(statistics.median(scrolls))}")


async def _timed(label: str, work: Callable[[], Awaitable[Any]], repeat: int = 3) -> Any:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = await work()
        times.append(time.perf_counter() - began)
    print(f"{label}: first {_ms(times[0])}, median {_ms(statistics.median(times))}")
    return result


async def _refusable(label: str, work: Callable[[], Awaitable[Any]]) -> None:
    try:
        await _timed(label, work)
    except QueryError as exc:
        print(f"{label}: refused ({exc})")


async def _queries(path: Path, count: int) -> None:
    store = SqliteStore(path, readonly=True)
    await store.open()
    try:
        everything = RunFilter()
        page = await _timed("first page of 50, no filter", lambda: store.viewer_runs(everything, limit=50))
        cursor = page.older
        for _ in range(99):
            cursor = (await store.viewer_runs(everything, limit=50, cursor=cursor)).older
        await _timed("page 101 (keyset cursor)", lambda: store.viewer_runs(everything, limit=50, cursor=cursor))
        rare = RunFilter(trigger=TriggerType.SCHEDULE, mode=RunMode.DRY, status=RunStatus.ABORTED)
        await _timed("first page, trigger + dry run + aborted (0.07 %)", lambda: store.viewer_runs(rare, limit=50))
        few = RunFilter(
            workflow_id="workflow-3", status=RunStatus.ABORTED, trigger=TriggerType.SCHEDULE, mode=RunMode.DRY
        )
        await _timed(
            "first page, workflow + aborted + schedule + dry (fewer than a page)",
            lambda: store.viewer_runs(few, limit=50),
        )
        wf = RunFilter(workflow_id="workflow-3", status=RunStatus.FAILED)
        await _timed("first page, workflow + failed", lambda: store.viewer_runs(wf, limit=50))
        prefix = RunFilter(run_id_prefix=page.runs[10]["run_id"][:10])
        await _timed("run id search (prefix)", lambda: store.viewer_runs(prefix, limit=50))
        for chars in (2, 4, 6, 8):
            search = RunFilter(run_id_prefix=page.runs[10]["run_id"][:chars])
            await _refusable(
                f"run id search, {chars} characters: list", functools.partial(store.viewer_runs, search, limit=50)
            )
            await _refusable(f"run id search, {chars} characters: cards", functools.partial(store.run_summary, search))
        await _timed(f"summary cards over all {count:,} runs", lambda: store.run_summary(everything), repeat=2)
        http = RunFilter(trigger=TriggerType.HTTP)
        await _timed("summary cards, trigger = http", lambda: store.run_summary(http), 2)
        day = RunFilter(since=format_ts(time.time_ns() - 86_400 * 10**9))
        await _timed("summary cards, last 24 h", lambda: store.run_summary(day), repeat=2)
        await _timed("facets (workflow ids)", lambda: store.facets(project=None))
    finally:
        await store.close()


def bench_many_runs(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "many.db"
        began = time.perf_counter()
        fill_runs(path, count)
        print(f"wrote {count:,} runs in {time.perf_counter() - began:.0f} s")
        asyncio.run(_queries(path, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    if not args.skip_browser:
        bench_large_run()
    bench_many_runs(args.runs)


if __name__ == "__main__":
    main()
