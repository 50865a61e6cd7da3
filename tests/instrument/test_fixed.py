"""Fixed attributes: captured once per capture policy, recorded as a plain mapping would be."""

from __future__ import annotations

import re

import flowledger
from flowledger.instrument import FixedAttributes, attempt
from flowledger.instrument.capture import CapturePolicy, RawJSON
from flowledger.testing import CapturedEvents

ATTRIBUTES = {"flowledger.phase": "call", "flowledger.call": "steps:inc", "size": 3}


def test_it_reads_as_the_mapping_it_copied() -> None:
    source = dict(ATTRIBUTES)
    fixed = FixedAttributes(source)
    source["size"] = 4  # a copy: the caller's dict changing later changes nothing
    assert dict(fixed) == ATTRIBUTES
    assert len(fixed) == 3
    assert fixed["flowledger.call"] == "steps:inc"
    assert "FixedAttributes(" in repr(fixed)


def test_the_record_is_made_once_per_policy() -> None:
    fixed = FixedAttributes(ATTRIBUTES)
    policy = CapturePolicy(re.compile("secret"), 4096)
    first = fixed.record(policy)
    assert fixed.record(policy) is first
    other = fixed.record(CapturePolicy(re.compile("secret"), 4096))
    assert other is not first
    assert isinstance(other, RawJSON)
    assert other.value() == ATTRIBUTES


def test_a_secret_looking_key_is_redacted_once_for_every_event(events: CapturedEvents) -> None:
    fixed = FixedAttributes({"api_token": "tok-123", "plain": "kept"})
    with flowledger.run("wf"):
        for number in (1, 2):
            with attempt("call", input=number, attributes=fixed) as hook:
                hook.set_output(number)
    recorded = [event["data"]["attributes"] for event in events.nodes("call")]
    assert recorded == [{"api_token": "[REDACTED]", "plain": "kept"}] * 2


def test_events_carry_what_a_plain_mapping_gives(events: CapturedEvents) -> None:
    with flowledger.run("wf"):
        with attempt("plain", input=1, attributes=dict(ATTRIBUTES)) as hook:
            hook.set_output(1)
        with attempt("fixed", input=1, attributes=FixedAttributes(ATTRIBUTES)) as hook:
            hook.set_attribute("late", True)  # merged with the fixed ones, as with a plain mapping
            hook.set_output(1)
    assert events.nodes("plain")[0]["data"]["attributes"] == ATTRIBUTES
    assert events.nodes("fixed")[0]["data"]["attributes"] == {**ATTRIBUTES, "late": True}
