"""Generator and async generator nodes: one attempt from the first step to the end, with the yielded items."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any

import pytest

import flowledger
from flowledger.instrument._decorator import CLOSED_EARLY_ATTRIBUTE, ITEMS_ATTRIBUTE
from flowledger.testing import CapturedEvents


@flowledger.node
def child(x: int) -> int:
    return x * 10


@flowledger.node
def count_up(n: int) -> Iterator[int]:
    for i in range(n):
        flowledger.cost(tokens=1)
        yield child(i)


@flowledger.node
def fail_after(n: int) -> Iterator[int]:
    yield from range(n)
    raise ValueError("ran out")


@flowledger.node
async def acount_up(n: int) -> AsyncGenerator[dict[str, int]]:
    for i in range(n):
        await asyncio.sleep(0)
        flowledger.cost(tokens=2)
        yield {"i": child(i)}


@flowledger.node
async def afail_after(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i
    raise ValueError("ran out")


def test_a_generator_node_records_its_items_cost_and_nested_nodes(events: CapturedEvents) -> None:
    """The output is the list of yielded items; cost and nodes made during its steps are the attempt's own."""
    with flowledger.run("wf"):
        assert list(count_up(3)) == [0, 10, 20]
    (data,) = (e["data"] for e in events.nodes("count_up"))
    assert data["status"] == "succeeded"
    assert data["output"] == [0, 10, 20]
    assert data["cost"]["tokens"] == 3
    assert data["attributes"] == {ITEMS_ATTRIBUTE: 3}
    children = [e["data"] for e in events.nodes("child")]
    assert [c["parent_span_id"] for c in children] == [data["span_id"]] * 3
    assert all(c["started_at"] >= data["started_at"] for c in children)


def test_an_exception_inside_a_generator_fails_its_attempt(events: CapturedEvents) -> None:
    """An error raised while the caller iterates is the attempt's failure, and the run's failing node."""
    with pytest.raises(ValueError, match="ran out"), flowledger.run("wf"):
        for _ in fail_after(2):
            pass
    data = events.nodes("fail_after")[0]["data"]
    assert data["status"] == "failed"
    assert data["error"]["type"] == "ValueError"
    assert data["attributes"] == {ITEMS_ATTRIBUTE: 2}
    assert "output" not in data
    assert events.runs()[0]["data"]["error"]["node_id"] == "fail_after"


def test_the_callers_code_between_steps_is_not_part_of_the_node(events: CapturedEvents) -> None:
    """Cost and nodes of the code iterating a generator node belong to the caller, not to the generator."""
    with flowledger.run("wf"):
        for x in count_up(2):
            flowledger.cost(tokens=100)
            child(x)
        assert flowledger.instrument.current_node() is None
    data = events.nodes("count_up")[0]["data"]
    assert data["cost"]["tokens"] == 2
    parents = [e["data"]["parent_span_id"] for e in events.nodes("child")]
    assert parents.count(data["span_id"]) == 2  # the two made inside; the caller's two are not its children
    assert events.runs()[0]["data"]["cost"]["tokens"] == 202


def test_a_generator_closed_early_succeeds_with_the_items_so_far(events: CapturedEvents) -> None:
    """close() (or a break) ends the attempt as succeeded, with what was yielded and a closed_early mark."""
    cleaned: list[bool] = []

    @flowledger.node
    def endless() -> Generator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            cleaned.append(True)

    with flowledger.run("wf"):
        items = endless()
        assert [next(items), next(items)] == [0, 1]
        items.close()
    assert cleaned == [True]
    data = events.nodes("endless")[0]["data"]
    assert data["status"] == "succeeded"
    assert data["output"] == [0, 1]
    assert data["attributes"] == {ITEMS_ATTRIBUTE: 2, CLOSED_EARLY_ATTRIBUTE: True}


def test_send_and_throw_reach_the_generator(events: CapturedEvents) -> None:
    """Values sent and exceptions thrown into a generator node reach the function, as without the decorator."""

    @flowledger.node
    def echo() -> Generator[Any, Any]:
        received = yield "ready"
        while True:
            try:
                received = yield received
            except KeyError:
                received = "caught"

    with flowledger.run("wf"):
        g = echo()
        assert next(g) == "ready"
        assert g.send("a") == "a"
        assert g.throw(KeyError("k")) == "caught"
        g.close()
    assert events.nodes("echo")[0]["data"]["output"] == ["ready", "a", "caught"]


def test_many_items_are_cut_at_the_capture_limit(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """Past the capture limit the output is a truncated preview; every item still reaches the caller."""
    configure(capture_limit_bytes=1024)
    with flowledger.run("wf"):
        assert sum(1 for _ in count_up(2000)) == 2000
    data = events.nodes("count_up")[0]["data"]
    output = data["output"]
    assert output["__flowledger__"] == "truncated"
    assert output["preview"].startswith("[0,10,20,")
    assert output["original_bytes_at_least"] > 1024
    assert data["attributes"] == {ITEMS_ATTRIBUTE: 2000}


def test_an_async_generator_node_records_items_failure_and_early_close(events: CapturedEvents) -> None:
    """Async generators: the items, an error raised inside, and aclose() are recorded as for sync ones."""

    async def main() -> None:
        assert [x async for x in acount_up(2)] == [{"i": 0}, {"i": 10}]
        with pytest.raises(ValueError, match="ran out"):
            async for _ in afail_after(1):
                pass
        items = acount_up(5)
        assert await items.__anext__() == {"i": 0}
        await items.aclose()

    with flowledger.run("wf"):
        asyncio.run(main())
    whole, closed = (e["data"] for e in events.nodes("acount_up"))
    assert (whole["status"], whole["output"], whole["cost"]["tokens"]) == ("succeeded", [{"i": 0}, {"i": 10}], 4)
    assert [c["data"]["parent_span_id"] for c in events.nodes("child")][:2] == [whole["span_id"]] * 2
    assert (closed["status"], closed["output"]) == ("succeeded", [{"i": 0}])
    assert closed["attributes"][CLOSED_EARLY_ATTRIBUTE] is True
    failed = events.nodes("afail_after")[0]["data"]
    assert (failed["status"], failed["error"]["type"]) == ("failed", "ValueError")


def test_a_generator_node_outside_a_run_is_a_run_of_its_own(events: CapturedEvents) -> None:
    """Iterated outside any run, the generator records a run of its own that ends with it."""
    assert list(count_up(2)) == [0, 10]
    (run,) = events.runs()
    assert run["data"]["status"] == "succeeded"
    assert events.nodes("count_up")[0]["run_id"] == run["run_id"]
    assert flowledger.instrument.current_run() is None


def test_a_generator_effect_is_simulated_in_a_dry_run(events: CapturedEvents) -> None:
    """In a dry run an effect generator yields nothing and is recorded as simulated."""
    sent: list[int] = []

    @flowledger.node(effect=True)
    def send_all(n: int) -> Iterator[int]:
        for i in range(n):
            sent.append(i)
            yield i

    with flowledger.run("wf", dry_run=True):
        assert list(send_all(3)) == []
    assert sent == []
    assert events.nodes("send_all")[0]["data"]["simulated"] is True


def test_disabled_generator_nodes_pass_everything_through(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """With recording off, generator nodes iterate, send and close as the plain functions do."""
    configure(disabled=True)

    async def main() -> list[dict[str, int]]:
        return [x async for x in acount_up(2)]

    assert list(count_up(2)) == [0, 10]
    assert asyncio.run(main()) == [{"i": 0}, {"i": 10}]
    assert len(events) == 0


def test_the_guard_replays_a_repeated_effect_generators_items(
    events: CapturedEvents, configure: Callable[..., Any], tmp_path: Any
) -> None:
    """With the guard on, a repeated effect generator yields the items recorded the first time, without running."""
    configure(idempotency_guard=True, idempotency_dir=tmp_path)
    sent: list[int] = []

    @flowledger.node(effect=True)
    def send_all(n: int) -> Iterator[dict[str, int]]:
        for i in range(n):
            sent.append(i)
            yield {"sent": i}

    with flowledger.run("wf"):
        first = list(send_all(2))
    with flowledger.run("wf"):
        again = list(send_all(2))
    assert first == again == [{"sent": 0}, {"sent": 1}]
    assert sent == [0, 1]
    live, duplicate = (e["data"] for e in events.nodes("send_all"))
    assert duplicate["duplicate"] is True
    assert live["output"] == duplicate["output"] == first
