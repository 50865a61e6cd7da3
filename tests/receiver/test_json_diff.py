"""The structural JSON diff: empty exactly when equal, and each change at its deepest path."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowledger.receiver._json_diff import ChangeKind, json_diff

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@given(JSON, JSON)
def test_no_changes_exactly_when_the_values_are_equal(a: Any, b: Any) -> None:
    """json_diff(a, b) is empty if and only if a and b are the same JSON (true is not 1)."""
    same_json = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (json_diff(a, b) == []) == same_json
    assert json_diff(a, a) == []


@given(JSON, JSON)
def test_every_change_names_a_path_from_the_root(a: Any, b: Any) -> None:
    """Paths start at $, and removed/added changes carry the value of the side that has it."""
    for change in json_diff(a, b):
        assert change.path.startswith("$")
        if change.kind is ChangeKind.REMOVED:
            assert change.b is None
        if change.kind is ChangeKind.ADDED:
            assert change.a is None


def test_changes_are_found_at_the_deepest_place() -> None:
    """A nested value, an added key, a removed item, a changed type and an odd key each get their own path."""
    a = {"order": {"lines": [1, 2, 3], "id": "A"}, "odd key": 1, "t": 1}
    b = {"order": {"lines": [1, 5], "id": "A", "note": "x"}, "odd key": 2, "t": "1"}
    changes = [c.as_json() for c in json_diff(a, b)]
    assert changes == [
        {"path": "$.order.lines[1]", "kind": "changed", "a": 2, "b": 5},
        {"path": "$.order.lines[2]", "kind": "removed", "a": 3, "b": None},
        {"path": "$.order.note", "kind": "added", "a": None, "b": "x"},
        {"path": '$["odd key"]', "kind": "changed", "a": 1, "b": 2},
        {"path": "$.t", "kind": "type_changed", "a": 1, "b": "1"},
    ]


def test_a_long_list_of_changes_is_cut_and_counted() -> None:
    """Past the limit, one truncated change says how many more there were."""
    changes = json_diff(list(range(10)), list(range(10, 20)), limit=3)
    assert len(changes) == 4
    assert changes[-1].kind is ChangeKind.TRUNCATED
    assert changes[-1].a == 7
