"""A map keeps at most ``max_concurrency`` item tasks alive, however many items it has, with every item recorded.

The node functions the definitions call are defined here (``tests.workflow.test_map_tasks:NAME``). They count the
asyncio tasks alive (``asyncio.all_tasks()``) from inside the run, so nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

import pytest

from flowledger import RunAborted
from flowledger._exceptions import WorkflowFailed
from flowledger.testing import CapturedEvents
from flowledger.workflow import DEFAULT_MAP_CONCURRENCY

Build = Callable[..., ModuleType]

HERE: Final = "tests.workflow.test_map_tasks"
"""Where the definitions find the node functions below."""
ITEMS: Final = 5000
"""Items of the big maps: a task per item would be this many tasks alive."""

_seen: dict[str, int] = {}
"""What the node functions saw: ``before`` (tasks alive before the map), ``peak`` (tasks alive during it),
``running`` and ``most`` (items running at once, now and at most)."""


def _reset() -> None:
    _seen.clear()
    _seen.update(before=0, peak=0, running=0, most=0)


# --- node functions ------------------------------------------------------------


async def items(count: int) -> list[int]:
    """The list ``0 .. count-1``; notes how many tasks are alive before the map."""
    _seen["before"] = len(asyncio.all_tasks())
    return list(range(count))


async def counted(value: int, *, fail_at: int = -1) -> int:
    """Twice the item, noting the tasks alive and the items running at once; item ``fail_at`` raises."""
    _seen["running"] += 1
    _seen["most"] = max(_seen["most"], _seen["running"])
    try:
        await asyncio.sleep(0)  # the other items' turn: they run at once, as many as the map lets them
        _seen["peak"] = max(_seen["peak"], len(asyncio.all_tasks()))
        if value == fail_at:
            raise ValueError(f"item {value} is bad")
        return value * 2
    finally:
        _seen["running"] -= 1


async def stuck(value: int) -> int:
    """Notes the tasks alive, then waits far past any deadline of these tests."""
    _seen["peak"] = max(_seen["peak"], len(asyncio.all_tasks()))
    await asyncio.sleep(30.0)
    return value


# --- helpers -------------------------------------------------------------------


def _by_item(events: CapturedEvents, node_id: str) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for event in events.nodes(node_id):
        found.setdefault(event["data"]["item"], []).append(event["data"])
    return found


def _definition(name: str, map_spec: str, call: str = "counted", with_: str = "{}", limits: str = "{}") -> str:
    return f"""
        flowledger: 1
        workflow: {{id: {name}}}
        limits: {limits}
        nodes:
          - {{id: src, call: "{HERE}:items"}}
          - {{id: each, call: "{HERE}:{call}", with: {with_}, needs: [src], map: {map_spec}}}
        """


# --- tests ---------------------------------------------------------------------


def test_a_map_of_many_items_keeps_at_most_max_concurrency_item_tasks(build: Build, events: CapturedEvents) -> None:
    """5,000 items, max_concurrency 4: 4 items run at once, 4 item tasks alive at most; all recorded, in order."""
    _reset()
    module = build(_definition("many_items", "{max_concurrency: 4}"))
    assert asyncio.run(module.run(ITEMS)) == [2 * i for i in range(ITEMS)]
    assert _seen["most"] == 4
    # Before the map: the run's task and the `src` node's task. During it: the run's task, the map node's task,
    # and the items' tasks (a task per item would be thousands).
    assert _seen["peak"] <= _seen["before"] + 4, _seen
    records = _by_item(events, "each")
    assert sorted(records) == list(range(ITEMS))
    assert all([r["status"] for r in found] == ["succeeded"] for found in records.values())


def test_a_map_without_max_concurrency_keeps_the_default_number_of_item_tasks(
    build: Build, events: CapturedEvents
) -> None:
    """`map: {}` runs DEFAULT_MAP_CONCURRENCY (8) items at once, with that many item tasks alive at most."""
    _reset()
    module = build(_definition("default_limit", "{}"))
    assert asyncio.run(module.run(ITEMS)) == [2 * i for i in range(ITEMS)]
    assert _seen["most"] == DEFAULT_MAP_CONCURRENCY
    assert _seen["peak"] <= _seen["before"] + DEFAULT_MAP_CONCURRENCY, _seen


def test_a_failing_item_of_a_big_map_skips_the_items_after_it(build: Build, events: CapturedEvents) -> None:
    """Item 10 of 5,000 fails: the items that had begun finish, every later one is skipped, each with one record."""
    _reset()
    module = build(_definition("big_fail", "{max_concurrency: 4}", with_="{fail_at: 10}"))
    with pytest.raises(WorkflowFailed) as info:
        asyncio.run(module.run(ITEMS))
    assert str(info.value.__cause__) == "item 10 is bad"
    assert _seen["peak"] <= _seen["before"] + 4, _seen
    records = _by_item(events, "each")
    assert sorted(records) == list(range(ITEMS))
    assert all(len(found) == 1 for found in records.values())
    statuses = {index: found[0]["status"] for index, found in records.items()}
    assert statuses[10] == "failed"
    assert all(statuses[index] == "succeeded" for index in range(10))
    assert all(statuses[index] in ("succeeded", "skipped") for index in range(11, 14))  # begun with item 10
    assert all(statuses[index] == "skipped" for index in range(14, ITEMS))
    assert {found[0]["skip_reason"] for found in records.values() if found[0]["status"] == "skipped"} == {
        "an earlier item failed"
    }


def test_an_aborted_big_map_records_every_item(build: Build, events: CapturedEvents) -> None:
    """At the deadline, the running items fail and every item that never started is skipped as aborted."""
    _reset()
    module = build(_definition("big_abort", "{max_concurrency: 3}", call="stuck", limits="{deadline_s: 0.5}"))
    with pytest.raises(RunAborted):
        asyncio.run(module.run(ITEMS))
    assert _seen["peak"] <= _seen["before"] + 2 * 3, (
        _seen
    )  # under a deadline, asyncio.wait_for runs each attempt in a task
    records = _by_item(events, "each")
    assert sorted(records) == list(range(ITEMS))
    assert all(len(found) == 1 for found in records.values())
    assert [records[index][0]["status"] for index in range(3)] == ["failed"] * 3  # cut at the deadline
    for index in range(3, ITEMS):
        assert (records[index][0]["status"], records[index][0]["skip_reason"]) == (
            "skipped",
            "the run was aborted (deadline)",
        )
