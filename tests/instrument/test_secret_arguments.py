"""A secret passed as a node's one positional argument is recorded redacted, as one passed by name is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger.instrument._effects import idempotency_key
from flowledger.testing import CapturedEvents

REPO_ROOT = Path(__file__).resolve().parents[2]


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


@flowledger.node(effect=True)
def pay(token: str) -> str:
    return "paid"


def test_an_effects_key_is_the_same_whatever_the_redaction_patterns(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """pay("tok_1") has one key, the one it had before lone secrets were redacted: made of the value as given,
    whether ``token`` looks secret (recorded as {"token": "[REDACTED]"}) or not (recorded as the value)."""
    with flowledger.run("wf"):
        pay("tok_1")
    configure(redact_patterns=["order"])
    with flowledger.run("wf"):
        pay("tok_1")
    finished = [e["data"] for e in events.of_kind("node_finished")]
    assert [data["input"] for data in finished] == [{"token": "[REDACTED]"}, "tok_1"]
    assert [data["idempotency_key"] for data in finished] == [idempotency_key("wf", "pay", "tok_1")] * 2


GUARDED_PAYMENT = """
import json, flowledger
executed = []
@flowledger.node(effect=True)
def pay(token):
    executed.append(token)
    return "paid"
with flowledger.run("wf"):
    returned = pay("tok_1")
print(json.dumps({"executed": executed, "returned": returned}), flush=True)
"""


@pytest.mark.parametrize("patterns", [("", "order"), ("order", "")])
def test_the_guard_skips_an_effect_done_under_other_redaction_patterns(
    tmp_path: Path, patterns: tuple[str, str]
) -> None:
    """FLOWLEDGER_IDEMPOTENCY_GUARD=1: a process with other FLOWLEDGER_REDACT_PATTERNS (``token`` secret in one,
    not in the other) returns the recorded output of pay("tok_1") instead of paying again."""
    script = tmp_path / "guarded_payment.py"
    script.write_text(GUARDED_PAYMENT)
    results = []
    for redact in patterns:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
        env.update(
            PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
            FLOWLEDGER_SINKS="memory",
            FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"),
            FLOWLEDGER_EXPORT_SPANS="0",
            FLOWLEDGER_IDEMPOTENCY_GUARD="1",
            FLOWLEDGER_IDEMPOTENCY_DIR=str(tmp_path / "idempotency"),
        )
        if redact:
            env["FLOWLEDGER_REDACT_PATTERNS"] = redact
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout))
    assert results == [{"executed": ["tok_1"], "returned": "paid"}, {"executed": [], "returned": "paid"}]
