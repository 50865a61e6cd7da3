"""The store's shared SQL translated to PostgreSQL: numbered parameters and payload JSON paths."""

from __future__ import annotations

import pytest

from flowledger.receiver.store._records import NODE_PAYLOAD_SQL, RUN_PAYLOAD_SQL
from flowledger.receiver.store.postgres._dialect import named, numbered, payload_sql


def test_parameters_are_numbered_in_order_from_a_start() -> None:
    """Each ``?`` becomes the next ``$n``; a start lets more parameters follow earlier ones."""
    assert numbered("a = ? AND b IN (?, ?)") == "a = $1 AND b IN ($2, $3)"
    assert numbered("c < ?", first=4) == "c < $4"
    assert numbered("SELECT 1") == "SELECT 1"


def test_every_declared_payload_column_translates() -> None:
    """The run and node payload columns read the same JSON paths from the body as json (a NUL escape as U+FFFD)."""
    run = payload_sql(RUN_PAYLOAD_SQL)
    node = payload_sql(NODE_PAYLOAD_SQL)
    assert run.keys() == RUN_PAYLOAD_SQL.keys()
    assert node.keys() == NODE_PAYLOAD_SQL.keys()
    assert run["input_json"] == "(replace(ls.body, '\\u0000', '\\ufffd')::json #> '{data,trigger_data}')::text"
    assert node["error_stack"] == "(replace(lo.body, '\\u0000', '\\ufffd')::json #>> '{data,error,stack}')::text"


def test_an_expression_that_is_not_a_payload_path_is_refused() -> None:
    """A declared column this engine cannot translate fails loudly instead of reading the wrong thing."""
    with pytest.raises(ValueError, match="not a JSON path"):
        payload_sql({"x": "upper(r.name)"})


def test_named_parameters_are_numbered_once_each_and_casts_stay() -> None:
    """Each ``:name`` becomes one ``$n`` however often it is used; ``::type`` casts are not parameters."""
    sql, values = named("a >= :since AND b = :now::text::timestamptz AND c < :since", {"now": "t", "since": "s"})
    assert sql == "a >= $1 AND b = $2::text::timestamptz AND c < $1"
    assert values == ["s", "t"]
    with pytest.raises(KeyError, match=":missing"):
        named("a = :missing", {})
