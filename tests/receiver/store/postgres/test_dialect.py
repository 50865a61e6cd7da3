"""The store's shared SQL translated to PostgreSQL: numbered parameters, payload JSON paths, NUL escapes."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from flowledger.receiver.store._records import NODE_PAYLOAD_SQL, RUN_PAYLOAD_SQL
from flowledger.receiver.store.postgres._dialect import named, nul_escapes_replaced, numbered, payload_sql


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
    assert run["input_json"] == f"({nul_escapes_replaced('ls.body')}::json #> '{{data,trigger_data}}')::text"
    assert node["error_stack"] == f"({nul_escapes_replaced('lo.body')}::json #>> '{{data,error,stack}}')::text"
    assert all("?" not in sql for sql in (*run.values(), *node.values()))  # numbered() would take it for a parameter


@pytest.mark.parametrize(
    ("body", "read"),
    [
        ('{"v": "plain"}', "plain"),
        ('{"v": "a\\u0000b"}', "a\ufffdb"),  # a NUL escape
        ('{"v": "\\u0000\\u0000\\u0000"}', "\ufffd" * 3),  # NUL escapes right after one another
        ('{"v": "regex \\\\u0000"}', "regex \\u0000"),  # an escaped backslash, then the text u0000
        ('{"v": "\\\\\\\\u0000x"}', "\\\\u0000x"),  # two escaped backslashes, then u0000
        ('{"v": "\\\\\\u0000"}', "\\\ufffd"),  # an escaped backslash, then a NUL escape
        ('{"v": "\\\\\\u0000\\\\u0000\\u0000"}', "\\\ufffd\\u0000\ufffd"),
    ],
)
def test_only_an_escape_that_is_a_nul_reads_as_u_fffd(postgres_url: str, body: str, read: str) -> None:
    """A NUL escape in a body reads as U+FFFD, wherever it is; a backslash followed by ``u0000`` in a value
    (an escaped backslash in JSON) reads back as it is."""
    assert json.loads(body)["v"].replace("\x00", "\ufffd") == read  # the case is what it says

    async def main() -> str:
        conn = await asyncpg.connect(postgres_url)
        try:
            value: str = await conn.fetchval(
                f"SELECT {nul_escapes_replaced('b.body')}::json ->> 'v' FROM (SELECT $1::text AS body) b", body
            )
        finally:
            await conn.close()
        return value

    assert asyncio.run(main()) == read


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
