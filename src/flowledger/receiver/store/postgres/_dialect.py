"""The seam between the engine-neutral SQL of the store and PostgreSQL's spelling of it.

The store's shared SQL builders (``runs_where``, the record declarations'
payload columns) write SQLite's spelling: ``?`` parameters and JSON paths
(``body -> '$.data.input'``). Rather than copy them, this engine translates
the differences it meets: parameters (``?`` or ``:name``) become ``$1, $2,
...``, and a payload path becomes a ``#>`` on the body read as ``json`` (the
text kept as it is: numbers and key order unchanged).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["NUL_ESCAPE", "named", "nul_escapes_replaced", "numbered", "payload_sql", "text_row", "without_nul"]

_PARAM: Final = re.compile(r"\?")
_NAME: Final = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PATH: Final = re.compile(r"^(\w+)\.body\s*(->>?)\s*'\$\.([\w.]+)'$")
NUL_ESCAPE: Final = "\\u0000"
"""How a NUL in a string is written in JSON text (any JSON text holding one has this)."""
_NUL_ESCAPE_PATTERN: Final = r"'(^|[^\\])((\\\\)*)\\u0000'"
"""A NUL escape with the backslashes before it (an even number) and the character before those (SQL literal; no
``?``, which :func:`numbered` would take for a parameter)."""
_NUL_ESCAPE_REPLACEMENT: Final = r"'\1\2\\ufffd'"
"""What :data:`_NUL_ESCAPE_PATTERN` matched, its escape written as U+FFFD's."""


def numbered(sql: str, first: int = 1) -> str:
    """``sql`` with each ``?`` replaced by ``$1``, ``$2``... (from ``first``); the SQL holds no ``?`` in literals."""
    counter = iter(range(first, first + sql.count("?")))
    return _PARAM.sub(lambda _: f"${next(counter)}", sql)


def named(sql: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``sql`` with each ``:name`` parameter replaced by ``$n`` (one per name), and the values in that order.

    A ``::type`` cast is left alone; a name ``params`` does not hold is a ``KeyError`` naming it.
    """
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise KeyError(f"the query's parameter :{name} has no value")
        return f"${order.setdefault(name, len(order) + 1)}"

    text = _NAME.sub(number, sql)
    return text, [params[name] for name in order]


def payload_sql(columns: Mapping[str, str]) -> dict[str, str]:
    """PostgreSQL expressions of the payload columns declared in SQLite's JSON-path spelling."""
    out: dict[str, str] = {}
    for column, expression in columns.items():
        match = _PATH.match(expression.strip())
        if match is None:
            raise ValueError(f"the payload column {column} ({expression}) is not a JSON path this engine translates")
        alias, arrow, path = match.groups()
        keys = ",".join(path.split("."))
        operator = "#>>" if arrow == "->>" else "#>"
        out[column] = f"({nul_escapes_replaced(f'{alias}.body')}::json {operator} '{{{keys}}}')::text"
    return out


def nul_escapes_replaced(text_sql: str) -> str:
    """A PostgreSQL expression of the JSON text ``text_sql`` with every NUL escape (``\\u0000``) written as
    U+FFFD's (``\\ufffd``).

    PostgreSQL's text cannot hold a NUL, and a path into JSON fails the whole read on a NUL escape anywhere in
    the body (a stack trace can carry one): there it reads as U+FFFD instead. Only an escape that is one is
    replaced: a ``u0000`` after an odd number of backslashes (the last one starts the escape), never the text
    ``\\u0000`` a value holds (``\\\\u0000`` in JSON: an escaped backslash, then ``u0000``). A match takes the
    character before its backslashes, so of NUL escapes right after one another every other one is replaced by
    one pass: a second pass replaces the rest. Text without ``\\u0000`` is left as it is, unread by the pattern.
    """
    once = f"regexp_replace({text_sql}, {_NUL_ESCAPE_PATTERN}, {_NUL_ESCAPE_REPLACEMENT}, 'g')"
    twice = f"regexp_replace({once}, {_NUL_ESCAPE_PATTERN}, {_NUL_ESCAPE_REPLACEMENT}, 'g')"
    return f"(CASE WHEN strpos({text_sql}, '{NUL_ESCAPE}') = 0 THEN {text_sql} ELSE {twice} END)"


def without_nul(value: Any) -> Any:
    """JSON data with every U+0000 in its strings (keys too) replaced by U+FFFD: PostgreSQL's text cannot hold a
    NUL, and one value with it would fail the statement writing the whole batch."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def text_row(values: Sequence[Any]) -> tuple[Any, ...]:
    """A row's values with every U+0000 in its texts replaced by U+FFFD (see :func:`without_nul`): one record
    from a client carrying a NUL never fails the statement writing the others."""
    return tuple(value.replace("\x00", "\ufffd") if isinstance(value, str) else value for value in values)
