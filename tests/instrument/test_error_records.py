"""Recorded errors: a long message leaves the stack its frames; an exception's own __eq__ never loses the error."""

from __future__ import annotations

from typing import Any

import pytest

import flowledger
from flowledger.instrument._run import MAX_STACK_CHARS, STACK_MESSAGE_CHARS, error_record
from flowledger.testing import CapturedEvents


@flowledger.node
def parse(body: str) -> None:
    raise ValueError("unexpected reply: " + body)


def test_a_long_message_leaves_the_stack_its_innermost_frames(events: CapturedEvents) -> None:
    """A 17,000-character message: the node's and the run's stack hold the frames, the message cut within them."""
    with pytest.raises(ValueError), flowledger.run("stack-demo"):
        parse("x" * 17_000)
    node_error = events.nodes("parse")[0]["data"]["error"]
    run_error = events.runs()[0]["data"]["error"]
    for error in (node_error, run_error):
        stack = error["stack"]
        assert stack.startswith("Traceback (most recent call last):")
        assert 'in parse\n    raise ValueError("unexpected reply: " + body)' in stack
        more = len("unexpected reply: ") + 17_000 - STACK_MESSAGE_CHARS
        assert stack.endswith(
            f"ValueError: unexpected reply: {'x' * (STACK_MESSAGE_CHARS - 18)}... [{more} more characters]\n"
        )
        assert len(stack) < MAX_STACK_CHARS
    assert run_error["node_id"] == "parse"


def test_each_message_of_a_chain_is_cut_and_redacted_in_the_stack() -> None:
    """A cause's long message and a long note are cut too; a secret in a message is redacted in the stack."""
    try:
        try:
            raise KeyError("k" * 30_000)
        except KeyError as cause:
            error = RuntimeError("password=hunter2 " + "y" * 30_000)
            error.add_note("n" * 30_000)
            raise error from cause
    except RuntimeError as caught:
        record = error_record(caught, redact=flowledger.instrument._pipeline.pipeline().policy.redact)
    stack = record["stack"]
    assert "The above exception was the direct cause of the following exception:" in stack
    assert "KeyError: 'kkk" in stack
    assert "RuntimeError: password=[REDACTED]" in stack
    assert "hunter2" not in stack
    assert "hunter2" not in record["message"]
    assert stack.count("more characters]") == 3
    assert len(stack) < MAX_STACK_CHARS


def test_a_deep_stack_keeps_its_innermost_frames() -> None:
    """Past MAX_STACK_CHARS of frames, the end is kept: the innermost frames and the message."""

    def down(n: int) -> None:
        if n == 0:
            raise ValueError("bottom")
        down(n - 1)

    try:
        down(300)
    except ValueError as caught:
        stack = error_record(caught)["stack"]
    assert len(stack) <= MAX_STACK_CHARS
    assert stack.endswith('raise ValueError("bottom")\nValueError: bottom\n')


class _Touchy(Exception):
    """An exception whose __eq__ raises (an ORM's error comparing by a field it cannot load, say)."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("cannot compare")

    __hash__ = Exception.__hash__


def test_an_exception_whose_eq_raises_keeps_the_runs_error(events: CapturedEvents) -> None:
    """With a cause chain of such exceptions, the run is stored failed with its error and failing node."""

    @flowledger.node
    def load() -> None:
        try:
            raise _Touchy("row 7 is locked")
        except _Touchy as first:
            raise _Touchy("could not load the order") from first

    with pytest.raises(_Touchy), flowledger.run("wf"):
        load()
    error: dict[str, Any] = events.runs()[0]["data"]["error"]
    assert error["message"] == "could not load the order"
    assert error["node_id"] == "load"
    assert events.runs()[0]["data"]["status"] == "failed"
