"""In real headless Chromium: values the viewer must show exactly: integers past 2**53, attempts shorter than a
millisecond, and a diff of runs of two workflows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.receiver.viewer._support import LiveReceiver, RunBuilder

pytestmark = pytest.mark.slow

_WAIT_MS = 15_000
_BIG = 2**63 - 1
_PAYLOAD = {"n": _BIG, "below": -(2**60) - 1, "safe": 2**53 - 1, "ratio": 0.1, "list": [_BIG, 1.5e300]}


def test_integers_past_2_53_keep_their_digits_in_the_tree_raw_view_and_copy(live: LiveReceiver, page: Any) -> None:
    """Output {"n": 2**63-1, ...}: the tree, the Raw view and Copy show 9223372036854775807, not ...6000."""
    run = RunBuilder().start()
    run.node("count", at_ms=0, duration_ms=5, output=_PAYLOAD)
    run.finish(at_ms=10)
    live.post(run.events)
    page.goto(f"{live.url}/#/runs/{run.run_id}")
    page.click(".wf-row[data-node=count]")
    page.wait_for_selector("[data-payload=Output] .j-num", timeout=_WAIT_MS)
    numbers = page.eval_on_selector_all("[data-payload=Output] .j-num", "nodes => nodes.map(n => n.textContent)")
    assert sorted(numbers) == sorted([str(_BIG), str(_BIG), str(-(2**60) - 1), str(2**53 - 1), "0.1", "1.5e+300"])
    page.click("[data-payload=Output] button.raw-toggle")
    raw = page.text_content("[data-payload=Output] pre.raw")
    assert json.loads(raw) == _PAYLOAD
    assert str(_BIG) in raw
    page.click("[data-payload=Output] button.copy")
    assert json.loads(page.evaluate("() => navigator.clipboard.readText()")) == _PAYLOAD


def test_attempts_shorter_than_a_millisecond_show_as_running(live: LiveReceiver, page: Any) -> None:
    """Three attempts of no measurable length, one after another: "up to 1 at once", not 0."""
    run = RunBuilder().start()
    for index, node_id in enumerate(("fetch", "price", "ship")):
        run.node(node_id, at_ms=index * 2, duration_ms=0.0)  # what an attempt under a millisecond looks like
    run.finish(at_ms=10)
    live.post(run.events)
    page.goto(f"{live.url}/#/runs/{run.run_id}")
    page.wait_for_selector("#max-concurrency", timeout=_WAIT_MS)
    assert page.text_content("#max-concurrency") == "up to 1 at once"


def test_diff_page_says_the_runs_are_of_different_workflows(live: LiveReceiver, page: Any) -> None:
    """#/diff/A/B of runs of two workflows with the same node ids names both workflows; no "definition same"."""
    a = RunBuilder(workflow_id="orders").start()
    a.node("fetch", at_ms=0, duration_ms=5)
    a.finish(at_ms=10)
    b = RunBuilder(workflow_id="refunds").start()
    b.node("fetch", at_ms=0, duration_ms=5)
    b.finish(at_ms=10)
    live.post(a.events + b.events)
    page.goto(f"{live.url}/#/diff/{a.run_id}/{b.run_id}")
    page.wait_for_selector("#diff-nodes", timeout=_WAIT_MS)
    assert page.text_content("#diff-workflows") == "Runs of different workflows: orders (A) and refunds (B)."
    assert page.text_content("#diff-facts").startswith("definition changed")
