"""Finding runs on PostgreSQL: full-text search with ``tsvector`` and a GIN index, and run attribute filters.

The texts are :mod:`.._search`'s (:func:`~.._search.texts_of_event` for
errors and payloads, each log line with its exception, each run's scalar
attributes from :func:`~.._search.attributes_of_event`), one row each in
``search_text`` with its run and project. The search answers what the SQLite
engine's FTS5 index answers for the same words:

- Each text is cut into tokens as FTS5's default ``unicode61`` tokenizer cuts
  it (:func:`tokens`): runs of letters, digits (and their combining marks),
  lowercased, diacritics removed; everything else separates. The tokens and
  their positions are handed to PostgreSQL as a ``tsvector`` literal, so no
  text search configuration, dictionary or locale of the server changes
  them (PostgreSQL's own parser would keep ``api.example.com`` or
  ``acct-7781`` whole, where FTS5 splits them).
- A search is :func:`~.._search.search_words`: every word must appear, a word
  written with a trailing ``*`` is a prefix. A word the tokenizer cuts in
  several tokens (``foo_bar``) is a phrase of them, as FTS5 reads a quoted
  string; the ``tsquery`` is built from the same tokens (``'foo' <-> 'bar'``,
  ``'zanzib':*``), never parsed from what a user typed, so no ``tsquery``
  syntax in the text means anything. A word with no token (``_``) is left out,
  and a search left with no word matches nothing, as on FTS5.
- As on SQLite, a search reads at most :data:`~.._search.SEARCH_HITS_MAX`
  matching texts, newest first (a listing then says ``total_capped``). A GIN
  index returns a word's matches in no order, so the newest are found by
  ``flowledger_search_hits`` (schema version 15): any SEARCH_HITS_MAX + 1
  matches first (fewer are all of them: a rare word, from the GIN index),
  else three windows of text ids from the newest,
  :data:`SEARCH_FIRST_WINDOW` wide and then four times wider each, then the
  older rest, each with a LIMIT of the hits still wanted and planned for its
  own words and bounds: a common word stops within the windows, read newest
  first along the primary key.

A lexeme of a ``tsvector`` holds at most 2,047 bytes: a longer token is cut to
:data:`LEXEME_MAX_BYTES`, longer than any word a search can hold, so it still
matches by prefix and never matches a shorter word. A purge deletes its runs'
rows in its transaction (their index entries go at the table's next vacuum);
a rebuild deletes and refolds all but those of OTLP log lines, which are not in
the ledger.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._logs import LogRow
from flowledger.receiver.store._protocol import RunQuery
from flowledger.receiver.store._query import runs_where
from flowledger.receiver.store._search import (
    SEARCH_HITS_MAX,
    SEARCH_TEXT_MAX_CHARS,
    attribute_conditions,
    search_words,
)
from flowledger.receiver.store.postgres._namespace import PG_SPACE

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "LEXEME_MAX_BYTES",
    "SEARCH_FIRST_WINDOW",
    "log_texts",
    "pg_attribute_clause",
    "pg_runs_where",
    "pg_search_clause",
    "pg_search_hits",
    "save_pg_attributes",
    "save_pg_texts",
    "tokens",
    "tsquery",
    "tsvector",
]

LEXEME_MAX_BYTES: Final = 2_000
"""Bytes of a token kept in a ``tsvector`` (PostgreSQL's limit is 2,047; a search word is at most 1,024)."""
_POSITION_MAX: Final = 16_383
"""The last position a ``tsvector`` records (later tokens share it)."""
_POSITIONS_PER_LEXEME: Final = 256
"""Positions a ``tsvector`` keeps per lexeme."""
_TOKEN_CATEGORIES: Final = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No", "Co", "Mn", "Mc", "Me"})
"""Unicode categories of the characters tokens are made of (FTS5's ``unicode61``: letters, numbers, private use;
combining marks stay with their letter)."""
SEARCH_FIRST_WINDOW: Final = 4_000
"""The newest texts a search looks in first; each next window of older texts is four times as wide."""
_HITS_SQL: Final = "(SELECT flowledger_search_hits(?::tsquery, ?, ?))::text[]"
_ASCII_TOKEN: Final = re.compile(r"[0-9a-z]+")
_R_SPACE: Final = PG_SPACE.format("r.")
"""A token of lowercased ASCII text: letters and digits (``_`` separates, as everything else does)."""
_INSERT_TEXTS: Final = (
    "INSERT INTO search_text (run_id, project, source, text, words) SELECT r, p, s, t, w::tsvector "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u (r, p, s, t, w)"
)
_INSERT_ATTRIBUTES: Final = (
    "INSERT INTO run_attributes (key, value, run_id, project) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING"
)


def _folded(token: str) -> str:
    """A token lowercased and without diacritics (its combining marks dropped after decomposition)."""
    lowered = token.lower()
    if lowered.isascii():
        return lowered
    decomposed = unicodedata.normalize("NFD", lowered)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def tokens(text: str) -> list[str]:
    """The tokens of ``text`` in order, as FTS5's ``unicode61`` tokenizer makes them (see the module docstring)."""
    if text.isascii():  # most texts: one regular expression in C
        return _ASCII_TOKEN.findall(text.lower())
    out: list[str] = []
    current: list[str] = []
    for char in text:
        if char.isalnum() or unicodedata.category(char) in _TOKEN_CATEGORIES:
            current.append(char)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return [folded for folded in map(_folded, out) if folded]


def _lexeme(token: str) -> str:
    """A token as a quoted ``tsvector``/``tsquery`` lexeme, cut to LEXEME_MAX_BYTES."""
    if len(token) <= LEXEME_MAX_BYTES and token.isascii():  # letters and digits only: nothing to escape
        return f"'{token}'"
    raw = token.encode("utf-8")
    if len(raw) > LEXEME_MAX_BYTES:
        token = raw[:LEXEME_MAX_BYTES].decode("utf-8", errors="ignore")
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector(text: str) -> str:
    """The ``tsvector`` literal of a text: each token with its positions (from 1)."""
    positions: dict[str, list[int]] = {}
    for position, token in enumerate(tokens(text), start=1):
        places = positions.get(token)
        if places is None:
            positions[token] = [position]
        elif len(places) < _POSITIONS_PER_LEXEME:
            places.append(position if position < _POSITION_MAX else _POSITION_MAX)
    return " ".join(f"{_lexeme(token)}:{','.join(map(str, places))}" for token, places in positions.items())


def tsquery(text: str) -> str | None:
    """The ``tsquery`` literal of a search (every word; ``word*`` a prefix; a word of several tokens a phrase),
    or None when no word has a token (nothing matches). ValueError when the text has no letter or digit."""
    terms: list[str] = []
    for word, prefix in search_words(text):
        lexemes = [_lexeme(token) for token in tokens(word)]
        if not lexemes:
            continue
        if prefix:
            lexemes[-1] += ":*"
        terms.append(lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")")
    return " & ".join(terms) if terms else None


def _clean(text: str) -> str:
    """PostgreSQL's text cannot hold a NUL: it is indexed as U+FFFD (never a token)."""
    return text.replace("\x00", "\ufffd")


def pg_search_clause(text: str, hits: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    """A condition on ``runs r`` (``?`` parameters): the run has a text matching ``text`` among the newest hits.

    ``hits`` are those hits' run ids when the caller read them already (:func:`pg_search_hits`); else the
    condition reads them. The hits name runs by id; a run id used in several projects is a run in each, and such
    a run is found by its own project's texts only (checked through ``search_text_by_run``; a run whose id no
    other project uses costs one probe of ``runs_once``). Below SEARCH_HITS_MAX hits that is exactly SQLite's
    answer; beyond it (``total_capped``), a run sharing the id of a hit may also be found by an older text of
    its own.
    """
    query = tsquery(text)
    if query is None:
        return "FALSE", []
    # The hits are one array (a parameter, or an InitPlan read once) and the runs looked up by their keys: as
    # ``IN (...)`` the planner walks a whole index of runs checking each against them.
    if hits is None:
        hits_sql, hits_params = _HITS_SQL, [query, SEARCH_HITS_MAX, SEARCH_FIRST_WINDOW]
    else:
        hits_sql, hits_params = "?::text[]", [list(hits)]
    return (
        f"r.run_id = ANY({hits_sql}) "
        f"AND (NOT EXISTS (SELECT 1 FROM runs t WHERE t.run_id = r.run_id AND {PG_SPACE.format('t.')} <> {_R_SPACE}) "
        "OR EXISTS (SELECT 1 FROM search_text o WHERE o.run_id = r.run_id "
        f"AND {PG_SPACE.format('o.')} = {_R_SPACE} AND o.words @@ ?::tsquery))",
        [*hits_params, query],
    )


async def pg_search_hits(conn: asyncpg.Connection, text: str) -> tuple[list[str], bool]:
    """The run ids of the newest SEARCH_HITS_MAX texts matching ``text`` (newest first), and whether more texts
    match (the answer is then over the newest only): one read of ``flowledger_search_hits``."""
    query = tsquery(text)
    if query is None:
        return [], False
    found = await conn.fetchval(
        "SELECT flowledger_search_hits($1::tsquery, $2, $3)", query, SEARCH_HITS_MAX + 1, SEARCH_FIRST_WINDOW
    )
    return list(found[:SEARCH_HITS_MAX]), len(found) > SEARCH_HITS_MAX


def pg_attribute_clause(key: str, value: str) -> tuple[str, list[Any]]:
    """A condition on ``runs r`` (``?`` parameters): the run started with attribute ``key`` equal to ``value``.

    ``run_attributes_once`` keys a value by its digest (``flowledger_digest``, schema version 21: a value can be
    longer than an index entry holds), so the rows are the range of the key and the value's digest, each then
    compared with the value itself. The key and value are one parameter each, read through a subquery the planner
    pulls up (the range's bounds are ``$n`` and ``flowledger_digest($n + 1)``, in a generic plan too).
    """
    return (
        f"(r.run_id, {PG_SPACE.format('r.')}) IN "
        f"(SELECT a.run_id, {PG_SPACE.format('a.')} FROM run_attributes a, (SELECT ?::text AS key, ?::text AS value) "
        "wanted WHERE a.key = wanted.key AND flowledger_digest(a.value) = flowledger_digest(wanted.value) "
        "AND a.value = wanted.value)",
        [key, value],
    )


def pg_runs_where(query: RunQuery, *, hits: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    """The SQLite engine's :func:`~.._query.runs_where` (``?`` parameters) with this engine's search and attribute
    conditions; ``hits``: the search's hits, read already (:func:`pg_search_hits`)."""
    where, params = runs_where(query, search=False, attributes=False)
    clauses = [where.removeprefix(" WHERE ")] if where else []
    if query.search is not None:
        clause, clause_params = pg_search_clause(query.search, hits)
        clauses.append(clause)
        params += clause_params
    attribute_clauses, attribute_params = attribute_conditions(query.attributes, pg_attribute_clause)
    clauses += attribute_clauses
    params += attribute_params
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def log_texts(rows: Sequence[LogRow]) -> list[tuple[str, str | None, str, str]]:
    """The ``(run_id, project, source, text)`` rows of log lines: message and exception, as SQLite's trigger has
    them."""
    out: list[tuple[str, str | None, str, str]] = []
    for row in rows:
        text = row.message if row.exception is None else f"{row.message}\n{row.exception}"
        out.append((row.run_id, row.project, f"log:{row.source.value}", text[:SEARCH_TEXT_MAX_CHARS]))
    return out


async def save_pg_texts(conn: asyncpg.Connection, rows: Sequence[tuple[str, str | None, str, str]]) -> None:
    """Insert ``(run_id, project, source, text)`` rows with their tokens (inside the caller's transaction)."""
    if rows:
        texts = [_clean(text) for _, _, _, text in rows]
        await conn.execute(
            _INSERT_TEXTS,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            texts,
            [tsvector(text) for text in texts],
        )


async def save_pg_attributes(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, str, str | None]]) -> None:
    """Insert ``(key, value, run_id, project)`` attribute rows once each (inside the caller's transaction)."""
    if rows:
        await conn.execute(_INSERT_ATTRIBUTES, *[list(column) for column in zip(*rows, strict=True)])
