"""The LangGraph adapter against real LangGraph graphs of plain Python nodes (and an offline fake chat model)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any, TypedDict

import pytest

import flowledger
from flowledger.testing import CapturedEvents

pytest.importorskip("langgraph", reason="the LangGraph adapter's tests need flowledger[langgraph]")

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from flowledger.adapters.langgraph import callbacks, instrument


class State(TypedDict, total=False):
    x: int
    a: int
    b: int
    c: int


def _graph(*, fail_b_times: int = 1, b_attempts: int = 3) -> Any:
    """START -> (a, b in parallel) -> sub (a subgraph running c) -> END; b fails its first calls."""
    calls = {"b": 0}

    def a(state: State) -> State:
        flowledger.cost(tokens=3)
        return {"a": state["x"] + 1}

    def b(state: State) -> State:
        calls["b"] += 1
        if calls["b"] <= fail_b_times:
            raise ValueError(f"b failed on call {calls['b']}")
        return {"b": state["x"] * 2}

    def c(state: State) -> State:
        return {"c": state["a"] + state["b"]}

    inner = StateGraph(State)
    inner.add_node("c", c)
    inner.add_edge(START, "c")
    inner.add_edge("c", END)
    outer = StateGraph(State)
    outer.add_node("a", a)
    retry = RetryPolicy(max_attempts=b_attempts, initial_interval=0.001, jitter=False, retry_on=ValueError)
    outer.add_node("b", b, retry_policy=retry)
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "a")
    outer.add_edge(START, "b")
    outer.add_edge("a", "sub")
    outer.add_edge("b", "sub")
    outer.add_edge("sub", END)
    return outer.compile()


def _nodes(events: CapturedEvents, node_id: str) -> list[dict[str, Any]]:
    return sorted((e["data"] for e in events.nodes(node_id)), key=lambda d: d["attempt"])


def test_an_invocation_is_a_run_and_its_nodes_are_attempts(events: CapturedEvents) -> None:
    """invoke() records one run with the input and final state; each node an attempt with its input and update."""
    result = instrument(_graph(), workflow_id="pricing").invoke({"x": 1})
    assert result == {"x": 1, "a": 2, "b": 2, "c": 4}
    (started,) = events.of_kind("run_started")
    (finished,) = events.runs()
    assert (started["data"]["workflow_id"], started["data"]["trigger_data"]) == ("pricing", {"x": 1})
    assert (finished["data"]["status"], finished["data"]["output"]) == ("succeeded", result)
    (a,) = _nodes(events, "a")
    assert (a["input"], a["output"], a["status"]) == ({"x": 1}, {"a": 2}, "succeeded")
    assert a["cost"]["tokens"] == 3
    assert finished["data"]["cost"]["tokens"] == 3
    assert {e["run_id"] for e in events} == {started["run_id"]}


def test_retries_are_numbered_attempts_of_the_same_task(events: CapturedEvents) -> None:
    """A node LangGraph retried has a failed attempt 1 with the exception, then a succeeded attempt 2."""
    instrument(_graph()).invoke({"x": 1})
    first, second = _nodes(events, "b")
    assert (first["attempt"], first["status"], first["error"]["type"]) == (1, "failed", "ValueError")
    assert (second["attempt"], second["status"], second["output"]) == (2, "succeeded", {"b": 2})


def test_nodes_of_one_step_run_side_by_side_and_a_subgraph_nests(events: CapturedEvents) -> None:
    """a and b are attempts of the same superstep under the run; the subgraph's node c is a child of sub."""
    instrument(_graph(fail_b_times=0)).invoke({"x": 1})
    run_span = events.of_kind("run_started")[0]["data"]["span_id"]
    (a,) = _nodes(events, "a")
    (b,) = _nodes(events, "b")
    (sub,) = _nodes(events, "sub")
    (c,) = _nodes(events, "c")
    assert a["attributes"]["langgraph.step"] == b["attributes"]["langgraph.step"] == 1
    assert a["parent_span_id"] == b["parent_span_id"] == sub["parent_span_id"] == run_span
    assert c["parent_span_id"] == sub["span_id"]
    assert c["output"] == {"c": 4}


def test_a_node_that_fails_for_good_fails_the_run(events: CapturedEvents) -> None:
    """Retries exhausted: every attempt failed, and the run failed with the node's exception."""
    with pytest.raises(ValueError, match="b failed"):
        _graph(fail_b_times=5, b_attempts=2).invoke({"x": 1}, config={"callbacks": [callbacks()]})
    assert [d["status"] for d in _nodes(events, "b")] == ["failed", "failed"]
    (run,) = events.runs()
    assert (run["data"]["status"], run["data"]["error"]["type"]) == ("failed", "ValueError")


def test_an_async_invocation_is_recorded_the_same_way(events: CapturedEvents) -> None:
    """ainvoke() records the same run and attempts as invoke()."""
    result = asyncio.run(instrument(_graph(fail_b_times=0)).ainvoke({"x": 2}))
    assert result["c"] == 7
    assert events.runs()[0]["data"]["status"] == "succeeded"
    assert sorted(d["node_id"] for d in (e["data"] for e in events.nodes())) == ["a", "b", "c", "sub"]


def test_a_graph_inside_a_flowledger_run_is_a_node_of_it(events: CapturedEvents) -> None:
    """Invoked inside flowledger.run, the graph is a node of that run, its nodes nested under it."""
    with flowledger.run("outer-workflow") as run:
        instrument(_graph(fail_b_times=0)).invoke({"x": 1})
    assert {e["run_id"] for e in events} == {run.run_id}
    (graph_node,) = _nodes(events, "LangGraph")
    (a,) = _nodes(events, "a")
    assert a["parent_span_id"] == graph_node["span_id"]
    assert [e["data"]["workflow_id"] for e in events.runs()] == ["outer-workflow"]


def test_the_langgraph_example_records_its_triage_graph(events: CapturedEvents) -> None:
    """examples/adapters/langgraph_graph.py runs: a run of support-triage, the retried node, the nested draft."""
    from tests.adapters._examples import load_example

    result = load_example("langgraph_graph").main()
    assert result["answer"] == "[en/p3] We are on it."
    (run,) = events.runs()
    assert (run["data"]["workflow_id"], run["data"]["status"]) == ("support-triage", "succeeded")
    assert [d["status"] for d in _nodes(events, "score_urgency")] == ["failed", "succeeded"]
    (answer,) = _nodes(events, "answer")
    (draft,) = _nodes(events, "draft")
    assert draft["parent_span_id"] == answer["span_id"]


def test_a_model_called_in_a_node_adds_its_token_usage_to_the_node(events: CapturedEvents) -> None:
    """The usage a chat model reports (LangChain's offline fake chat model here) is the calling node's cost."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    usage = {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}
    model = GenericFakeChatModel(messages=iter([AIMessage(content="42", usage_metadata=usage)]))

    class Chat(TypedDict, total=False):
        question: str
        answer: str

    def ask(state: Chat, config: RunnableConfig) -> Chat:
        return {"answer": str(model.invoke(state["question"], config=config).content)}

    graph = StateGraph(Chat)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    assert instrument(graph.compile()).invoke({"question": "six times seven?"}) == {
        "question": "six times seven?",
        "answer": "42",
    }
    (attempt,) = _nodes(events, "ask")
    assert attempt["cost"]["tokens"] == 12
    assert events.runs()[0]["data"]["cost"]["tokens"] == 12
    assert attempt["cost"]["breakdown"] == {
        "tokens_in": {"count": 5, "usd_nanos": 0},
        "tokens_out": {"count": 7, "usd_nanos": 0},
    }


def _async_chain(*, parallel: bool) -> Any:
    """Three async nodes: a -> b -> c in sequence, or a, b, c side by side in one step."""

    async def a(state: State) -> State:
        return {"a": state["x"] + 1}

    async def b(state: State) -> State:
        return {"b": state["x"] + 2}

    async def c(state: State) -> State:
        return {"c": state["x"] + 3}

    graph = StateGraph(State)
    for name, fn in (("a", a), ("b", b), ("c", c)):
        graph.add_node(name, fn)
    if parallel:
        for name in ("a", "b", "c"):
            graph.add_edge(START, name)
            graph.add_edge(name, END)
    else:
        graph.add_edge(START, "a")
        graph.add_edge("a", "b")
        graph.add_edge("b", "c")
        graph.add_edge("c", END)
    return graph.compile()


@pytest.mark.parametrize("parallel", [False, True], ids=["sequence", "parallel"])
def test_async_nodes_nest_under_the_run_as_sync_ones_do(
    events: CapturedEvents, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, parallel: bool
) -> None:
    """ainvoke() of async nodes: each attempt is a child of the run's span, nothing is left current in the caller,
    and no context error is logged."""

    async def main() -> dict[str, Any]:
        result: dict[str, Any] = await instrument(_async_chain(parallel=parallel)).ainvoke({"x": 1})
        assert flowledger.instrument.current_run() is None
        assert flowledger.instrument.current_node() is None
        return result

    assert asyncio.run(main()) == {"x": 1, "a": 2, "b": 3, "c": 4}
    run_span = events.of_kind("run_started")[0]["data"]["span_id"]
    nodes = [e["data"] for e in events.nodes()]
    assert sorted(d["node_id"] for d in nodes) == ["a", "b", "c"]
    assert {d["node_id"]: d["parent_span_id"] for d in nodes} == dict.fromkeys(["a", "b", "c"], run_span)
    assert events.runs()[0]["data"]["status"] == "succeeded"
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert "Failed to detach context" not in err
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


@flowledger.node
def _helper(value: int) -> int:
    """A decorated function a node calls: a node nested under the calling node's attempt."""
    return value * 10


def _async_costing_graph(*, parallel: bool) -> Any:
    """Async nodes a and b (in sequence, or side by side) that add cost and call the decorated ``_helper``."""

    async def a(state: State) -> State:
        flowledger.cost(tool_calls=3)
        await asyncio.sleep(0)
        return {"a": _helper(state["x"])}

    async def b(state: State) -> State:
        flowledger.cost(tool_calls=4)
        await asyncio.sleep(0)
        return {"b": _helper(state["x"] + 1)}

    graph = StateGraph(State)
    graph.add_node("a", a)
    graph.add_node("b", b)
    graph.add_edge(START, "a")
    if parallel:
        graph.add_edge(START, "b")
        graph.add_edge("a", END)
    else:
        graph.add_edge("a", "b")
    graph.add_edge("b", END)
    return graph.compile()


@pytest.mark.parametrize("stream", [False, True], ids=["ainvoke", "astream"])
@pytest.mark.parametrize("parallel", [False, True], ids=["sequence", "parallel"])
def test_an_async_node_is_the_current_node_while_its_code_runs(
    events: CapturedEvents,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    parallel: bool,
    stream: bool,
) -> None:
    """In an async graph, flowledger.cost() in a node counts to the node and the run, and a decorated function the
    node calls nests under it; nothing stays current in the caller, and nothing is logged."""

    async def main() -> None:
        app = instrument(_async_costing_graph(parallel=parallel))
        if stream:
            async for _chunk in app.astream({"x": 1}):
                pass
        else:
            assert await app.ainvoke({"x": 1}) == {"x": 1, "a": 10, "b": 20}
        assert flowledger.instrument.current_run() is None
        assert flowledger.instrument.current_node() is None

    asyncio.run(main())
    (run,) = events.runs()
    assert run["data"]["workflow_id"] == "LangGraph"
    assert run["data"]["cost"]["tool_calls"] == 7
    run_span = events.of_kind("run_started")[0]["data"]["span_id"]
    (a,) = _nodes(events, "a")
    (b,) = _nodes(events, "b")
    assert (a["cost"]["tool_calls"], b["cost"]["tool_calls"]) == (3, 4)
    assert a["parent_span_id"] == b["parent_span_id"] == run_span
    helpers = sorted((d["output"], d["parent_span_id"]) for d in (e["data"] for e in events.nodes("_helper")))
    assert helpers == [(10, a["span_id"]), (20, b["span_id"])]
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert "Failed to detach context" not in err
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


def test_a_stream_the_caller_stops_reading_is_an_aborted_run(events: CapturedEvents) -> None:
    """Breaking out of stream() ends the run aborted (the caller stopped reading), not failed with GeneratorExit."""
    for _chunk in instrument(_graph(fail_b_times=0)).stream({"x": 1}):
        break
    (run,) = events.runs()
    assert run["data"]["status"] == "aborted"
    assert run["data"]["error"]["reason"] == "interrupted"
    assert "stopped reading" in run["data"]["error"]["message"]
    assert {d["node_id"]: d["status"] for d in (e["data"] for e in events.nodes())} == {
        "a": "succeeded",
        "b": "succeeded",
    }


def test_an_async_stream_the_caller_stops_reading_is_an_aborted_run(events: CapturedEvents) -> None:
    """Closing astream() early ends the run aborted too."""

    async def main() -> None:
        stream = instrument(_async_chain(parallel=False)).astream({"x": 1})
        assert isinstance(stream, AsyncGenerator)
        async for _chunk in stream:
            break
        await stream.aclose()

    asyncio.run(main())
    (run,) = events.runs()
    assert (run["data"]["status"], run["data"]["error"]["reason"]) == ("aborted", "interrupted")


def test_a_graph_node_whose_stream_is_closed_early_succeeds_marked(events: CapturedEvents) -> None:
    """Inside a flowledger run, a graph streamed and left early is a succeeded node marked closed early."""
    with flowledger.run("outer-workflow"):
        for _chunk in instrument(_graph(fail_b_times=0)).stream({"x": 1}):
            break
    (graph_node,) = _nodes(events, "LangGraph")
    assert graph_node["status"] == "succeeded"
    assert graph_node["attributes"]["langgraph.closed_early"] is True
    assert events.runs()[0]["data"]["status"] == "succeeded"
