"""A LangGraph graph recorded by flowledger: `pip install 'flowledger[langgraph]'`, then run this file.

Plain Python nodes (no model calls): a router, two branches that run side by
side, one of them retried by LangGraph's RetryPolicy, and a subgraph. Start a
receiver first (`flowledger serve`), or set FLOWLEDGER_ENDPOINT; then
`flowledger show RUN_ID` shows each node attempt, nested as LangGraph ran it.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

import flowledger
from flowledger.adapters.langgraph import instrument


class Ticket(TypedDict, total=False):
    text: str
    language: str
    urgency: int
    answer: str


_tries = {"urgency": 0}


def detect_language(state: Ticket) -> Ticket:
    return {"language": "en" if state["text"].isascii() else "other"}


def score_urgency(state: Ticket) -> Ticket:
    _tries["urgency"] += 1
    if _tries["urgency"] == 1:
        raise TimeoutError("the scoring service was slow")  # LangGraph retries the node
    flowledger.cost(tool_calls=1)
    return {"urgency": 3 if "down" in state["text"] else 1}


def draft(state: Ticket) -> Ticket:
    return {"answer": f"[{state['language']}/p{state['urgency']}] We are on it."}


def build() -> Any:
    answering = StateGraph(Ticket)
    answering.add_node("draft", draft)
    answering.add_edge(START, "draft")
    answering.add_edge("draft", END)

    triage = StateGraph(Ticket)
    triage.add_node("detect_language", detect_language)
    retry = RetryPolicy(max_attempts=3, initial_interval=0.01, retry_on=TimeoutError)
    triage.add_node("score_urgency", score_urgency, retry_policy=retry)
    triage.add_node("answer", answering.compile())
    triage.add_edge(START, "detect_language")
    triage.add_edge(START, "score_urgency")
    triage.add_edge("detect_language", "answer")
    triage.add_edge("score_urgency", "answer")
    triage.add_edge("answer", END)
    return instrument(triage.compile(), workflow_id="support-triage")  # the one line


def main() -> Ticket:
    result: Ticket = build().invoke({"text": "The shop is down"})
    return result


if __name__ == "__main__":
    print(main())
    flowledger.flush(timeout_s=2.0)
