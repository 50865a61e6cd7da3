"""A secret passed as a node's one positional argument is recorded redacted, as one passed by name is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flowledger
from flowledger.testing import CapturedEvents


@flowledger.node
def login(password: str) -> bool:
    return bool(password)


@flowledger.node
def call_api(api_key: str, q: str = "") -> str:
    return q


@flowledger.node
def price(order: dict[str, Any]) -> int:
    return len(order)


class Vault:
    @flowledger.node
    def open(self, token: str) -> bool:
        return bool(token)


def _inputs(events: CapturedEvents) -> list[Any]:
    return [e["data"]["input"] for e in events.of_kind("node_finished")]


def test_a_lone_secret_argument_is_recorded_redacted_under_its_name(events: CapturedEvents) -> None:
    """login("hunter2") records {"password": "[REDACTED]"}: the mapping two arguments give, the value hidden."""
    with flowledger.run("wf"):
        login("hunter2")
        call_api("sk-live-123")
        call_api("sk-live-123", "q")
        Vault().open("tok-1")
    assert _inputs(events) == [
        {"password": "[REDACTED]"},
        {"api_key": "[REDACTED]"},
        {"api_key": "[REDACTED]", "q": "q"},
        {"token": "[REDACTED]"},
    ]
    assert "hunter2" not in repr(list(events))
    assert "sk-live" not in repr(list(events))


def test_a_lone_argument_that_is_not_secret_keeps_its_shape(events: CapturedEvents) -> None:
    """One positional argument whose name looks harmless is recorded as the value alone, as before."""
    with flowledger.run("wf"):
        price({"sku": "A1"})
    assert _inputs(events) == [{"sku": "A1"}]


def test_the_verdict_follows_the_redaction_pattern_configured(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """configure(redact_patterns=...) changes which parameter names are secret, for nodes decorated before too."""
    with flowledger.run("wf"):
        price({"sku": "A1"})
    configure(redact_patterns=["order"])
    with flowledger.run("wf"):
        price({"sku": "A2"})
        login("hunter2")
    assert _inputs(events) == [{"sku": "A1"}, {"order": "[REDACTED]"}, "hunter2"]


def test_an_effects_key_still_tells_two_secrets_apart(events: CapturedEvents) -> None:
    """The redaction is the record's: two calls with different secrets are two effects with two idempotency keys."""

    @flowledger.node(effect=True)
    def rotate(api_key: str) -> None:
        return None

    with flowledger.run("wf"):
        rotate("sk-1")
        rotate("sk-2")
        rotate("sk-1")
    keys = [e["data"]["idempotency_key"] for e in events.of_kind("node_finished")]
    assert keys[0] != keys[1]
    assert keys[0] == keys[2]
