"""A value captured as its ``repr`` is redacted as log text and exception messages are."""

from __future__ import annotations

import flowledger
from flowledger.instrument._pipeline import pipeline
from flowledger.instrument.capture import to_jsonable
from flowledger.testing import CapturedEvents


class Creds:
    """An object with ``__slots__`` and a repr of its own: it is captured as its repr."""

    __slots__ = ("token", "user")

    def __init__(self, user: str, token: str) -> None:
        self.user = user
        self.token = token

    def __repr__(self) -> str:
        return f"Creds(user={self.user!r}, token={self.token!r})"


def test_a_repr_marker_hides_secret_looking_pairs() -> None:
    """``Creds(token='tok-repr')`` is recorded with the token redacted and the harmless field kept."""
    record = to_jsonable(Creds("ada", "tok-repr"), pipeline().policy.redact)
    assert record == {
        "__flowledger__": "repr",
        "type": f"{__name__}.Creds",
        "repr": "Creds(user='ada', token=[REDACTED])",
    }


def test_a_node_input_and_output_held_as_reprs_carry_no_secret(events: CapturedEvents) -> None:
    """In a node's record (the capture the SDK sends), the repr of an argument and of the output is redacted."""

    @flowledger.node
    def refresh(creds: Creds) -> Creds:
        return Creds(creds.user, "tok-new")

    with flowledger.run("wf"):
        refresh(Creds("ada", "tok-old"))
    data = events.nodes("refresh")[0]["data"]
    assert data["input"]["repr"] == "Creds(user='ada', token=[REDACTED])"
    assert data["output"]["repr"] == "Creds(user='ada', token=[REDACTED])"
    assert "tok-" not in repr(list(events))


def test_without_redaction_the_repr_is_kept_whole() -> None:
    """No pattern (redaction turned off): the repr is as the object gives it."""
    assert to_jsonable(Creds("ada", "tok"), None)["repr"] == "Creds(user='ada', token='tok')"
