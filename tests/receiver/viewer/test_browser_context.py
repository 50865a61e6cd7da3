"""The run context in real headless Chromium: the list's context filters, a run's parent link and its children."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.receiver.viewer._support import LiveReceiver, RunBuilder, failed_run, typical_run

pytestmark = pytest.mark.slow

_MINUTE_NS = 60 * 1_000_000_000
_WAIT_MS = 15_000


def _with_context(run: RunBuilder, **context: str) -> RunBuilder:
    run.events[0]["data"].update(context)  # run_started
    return run


def _row_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#runs-table tbody tr[data-run-id]", "rows => rows.map(r => r.dataset.runId)"
    )
    return ids


def _wait_rows(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#runs-table tbody tr[data-run-id]').length === n", arg=count, timeout=_WAIT_MS
    )


def test_context_filters_parent_link_and_children(live: LiveReceiver, page: Any) -> None:
    """Agent and project filters narrow the list; a run links its parent and lists its children (of its project),
    which filter it."""
    base = time.time_ns() - 30 * _MINUTE_NS
    parent = _with_context(
        typical_run(start_ns=base, workflow_id="planner", project="travel"), user_id="u-7", agent_id="planner"
    )
    child = _with_context(
        typical_run(start_ns=base + _MINUTE_NS, workflow_id="booker", project="travel"),
        user_id="u-7",
        agent_id="booker",
        intent="book a seat",
        parent_run_id=parent.run_id,
    )
    failed_child = _with_context(
        failed_run(start_ns=base + 2 * _MINUTE_NS, workflow_id="booker", project="other"),
        agent_id="booker",
        parent_run_id=parent.run_id,
    )
    unrelated = typical_run(start_ns=base + 3 * _MINUTE_NS, workflow_id="billing")
    live.post([e for r in (parent, child, failed_child, unrelated) for e in r.events])

    page.goto(f"{live.url}/")
    _wait_rows(page, 4)
    assert "travel · booker · u-7 · book a seat" in page.text_content(f"tr[data-run-id='{child.run_id}'] .run-context")
    page.fill("#f-agent_id", "booker")
    page.press("#f-agent_id", "Enter")
    _wait_rows(page, 2)
    assert set(_row_ids(page)) == {child.run_id, failed_child.run_id}
    assert "agent_id=booker" in page.url
    page.fill("#f-project", "other")
    page.press("#f-project", "Enter")
    _wait_rows(page, 1)
    assert _row_ids(page) == [failed_child.run_id]
    page.wait_for_function(
        "() => document.querySelector('[data-card=total] .value')?.textContent === '1'", timeout=_WAIT_MS
    )

    page.goto(f"{live.url}/#/runs/{parent.run_id}")
    page.wait_for_selector("#children li", timeout=_WAIT_MS)
    listed = page.eval_on_selector_all("#children li", "items => items.map(i => i.dataset.runId)")
    assert listed == [child.run_id]  # a parent run id names a run of the child's own project: not "other"
    assert page.text_content("#run-header [data-fact=user] dd") == "u-7"
    assert page.query_selector("#parent-link") is None
    page.click(f"#children li[data-run-id='{child.run_id}'] a.child-link")
    page.wait_for_selector("#parent-link", timeout=_WAIT_MS)
    assert page.text_content("#run-header [data-fact=intent] dd") == "book a seat"
    page.click("#parent-link")
    page.wait_for_function(
        "id => location.hash === `#/runs/${id}?project=travel` && document.querySelector('#children')",
        arg=parent.run_id,
        timeout=_WAIT_MS,
    )
    page.click("#children-all")
    _wait_rows(page, 1)
    assert set(_row_ids(page)) == {child.run_id}  # the parent's project's children, as the run lists them
    assert page.input_value("#f-parent_run_id") == parent.run_id
