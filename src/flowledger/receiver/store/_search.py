"""Finding runs: full-text search over errors, log lines and payload text, and filters on run attributes.

The text lives once in ``search_text`` (one row per error, payload or log
line, with its run); ``search_fts`` is an SQLite FTS5 index over it with
``search_text`` as its external content. The projector adds the rows of
errors and payloads as it folds events (:func:`texts_of_event`); a trigger on
``logs`` adds every stored log line, the SDK's and OTLP's alike. Whoever
inserts into ``search_text`` (or ``logs``) indexes the new rows with one
statement afterwards (:data:`LAST_TEXT_ID_SQL`, then :data:`INDEX_TEXTS_SQL`,
in the same transaction); a trigger takes a deleted row out of the index.
A purge deletes a run's rows (and so its indexed text); a rebuild deletes and
refolds all but those of OTLP log lines, which are not in the ledger.

``run_attributes`` holds each run's scalar attributes (from ``run_started``)
as ``(key, value)`` text, so ``attr.KEY=VALUE`` is a range of its primary key.
Each filter is one more lookup, so a listing takes at most
:data:`ATTRIBUTE_FILTERS_MAX` of them; identical ones count once and a key
given two values matches no run (:func:`attribute_conditions`).

A search reads at most :data:`SEARCH_HITS_MAX` matching texts, newest first,
so its cost does not grow with the number of runs a common word matches; a
listing reports ``total_capped`` when the cap was reached.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import orjson

from flowledger._wire import EventKind

__all__ = [
    "ATTRIBUTE_FILTERS_MAX",
    "ATTRIBUTE_KEY_MAX_CHARS",
    "ATTRIBUTE_PARAM_PREFIX",
    "ATTRIBUTE_VALUE_MAX_CHARS",
    "HITS_CAPPED_SQL",
    "INDEX_TEXTS_SQL",
    "LAST_TEXT_ID_SQL",
    "SEARCH_HITS_MAX",
    "SEARCH_INDEX_BY_STATEMENT",
    "SEARCH_SCHEMA",
    "SEARCH_TEXT_MAX_CHARS",
    "SearchSource",
    "attribute_clause",
    "attribute_conditions",
    "attribute_filters",
    "attribute_filters_problem",
    "attribute_problem",
    "attributes_of_event",
    "fts_query",
    "hits_sql",
    "looks_like_run_id",
    "payload_text",
    "run_id_search",
    "search_clause",
    "search_words",
    "texts_of_event",
]

SEARCH_HITS_MAX: Final = 2_000
"""Most matching texts (newest first) one search reads."""
SEARCH_TEXT_MAX_CHARS: Final = 8_192
"""Characters of one error or payload that are indexed (payloads are 4 KiB by default anyway)."""
ATTRIBUTE_KEY_MAX_CHARS: Final = 128
"""Longest attribute key kept for ``attr.KEY=VALUE`` filters (and accepted in one)."""
ATTRIBUTE_VALUE_MAX_CHARS: Final = 1024
"""Longest attribute value kept for ``attr.KEY=VALUE`` filters (and accepted in one: a longer one matches no run)."""
ATTRIBUTE_PARAM_PREFIX: Final = "attr."
"""``GET /api/runs?attr.KEY=VALUE``: the query parameters that filter on run attributes start with this."""
ATTRIBUTE_FILTERS_MAX: Final = 20
"""Most ``attr.KEY=VALUE`` filters one listing takes, identical ones counted once: each is one more lookup of
``run_attributes`` (and SQLite refuses an expression of about a thousand)."""
_NOTHING_MATCHES: Final = "1 = 0"
"""A condition no row meets, in either engine's SQL."""


class SearchSource:
    """What a row of ``search_text`` holds (its ``source`` column)."""

    ERROR: Final = "error"
    PAYLOAD: Final = "payload"
    LOG_SDK: Final = "log:sdk"
    LOG_OTLP: Final = "log:otlp"


SEARCH_SCHEMA: Final = """
-- Full-text search over errors, payload text and log lines: the text once in search_text, an FTS5
-- index over it (external content) kept in step by triggers; a purge deletes a run's rows.
CREATE TABLE search_text (
    id     INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    source TEXT NOT NULL,
    text   TEXT NOT NULL
);
CREATE INDEX search_text_by_run ON search_text (run_id);
CREATE VIRTUAL TABLE search_fts USING fts5 (text, content = 'search_text', content_rowid = 'id');
CREATE TRIGGER search_text_indexed AFTER INSERT ON search_text
BEGIN INSERT INTO search_fts (rowid, text) VALUES (NEW.id, NEW.text); END;
CREATE TRIGGER search_text_unindexed AFTER DELETE ON search_text
BEGIN INSERT INTO search_fts (search_fts, rowid, text) VALUES ('delete', OLD.id, OLD.text); END;
CREATE TRIGGER logs_searchable AFTER INSERT ON logs
BEGIN
    INSERT INTO search_text (run_id, source, text)
    VALUES (NEW.run_id, 'log:' || NEW.source, substr(NEW.message || coalesce(char(10) || NEW.exception, ''), 1, 8192));
END;
INSERT INTO search_text (run_id, source, text)
SELECT run_id, 'log:' || source, substr(message || coalesce(char(10) || exception, ''), 1, 8192) FROM logs;
INSERT INTO search_text (run_id, source, text)
SELECT run_id, 'error', coalesce(error_type, '') || ': ' || error_message FROM runs WHERE error_message IS NOT NULL;
INSERT INTO search_text (run_id, source, text)
SELECT run_id, 'error', coalesce(error_type, '') || ': ' || error_message FROM node_runs
WHERE error_message IS NOT NULL;

-- Each run's scalar attributes, for attr.KEY=VALUE filters: a range of the primary key.
CREATE TABLE run_attributes (
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (key, value, run_id)
) WITHOUT ROWID;
CREATE INDEX run_attributes_by_run ON run_attributes (run_id);
"""

SEARCH_INDEX_BY_STATEMENT: Final = """
-- The full-text index filled by one INSERT ... SELECT per write of texts (INDEX_TEXTS_SQL) instead of a
-- trigger per text, which cost about ten times as much per row; rebuilt without its per-text column sizes
-- (nothing ranks matches by length). Deleted texts still leave the index through search_text_unindexed.
DROP TRIGGER IF EXISTS search_text_indexed;
DROP TABLE IF EXISTS search_fts;
CREATE VIRTUAL TABLE search_fts USING fts5 (text, content = 'search_text', content_rowid = 'id', columnsize = 0);
INSERT INTO search_fts (search_fts) VALUES ('rebuild');
"""
LAST_TEXT_ID_SQL: Final = "SELECT coalesce(max(id), 0) FROM search_text"
"""The id after which the texts a writer is about to insert are numbered (read before inserting)."""
INDEX_TEXTS_SQL: Final = "INSERT INTO search_fts (rowid, text) SELECT id, text FROM search_text WHERE id > ?"
"""Indexes the texts inserted after the id :data:`LAST_TEXT_ID_SQL` gave (in the same transaction)."""

_PAYLOADS: Final = {
    EventKind.RUN_STARTED: ("trigger_data",),
    EventKind.RUN_FINISHED: ("output",),
    EventKind.NODE_STARTED: ("input",),
    EventKind.NODE_FINISHED: ("input", "output"),
}
_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def payload_text(value: Any, *, plain_floats: bool = False) -> str:
    """The JSON text of a payload as it is indexed: compact, keys in the payload's order, non-ASCII kept.

    With ``plain_floats`` (the body decoder found every float zero or between 1e-4 and 1e16 in size, see
    :mod:`._canonical`) orjson writes it, byte for byte what ``json`` writes and over ten times faster on
    a small payload (``json`` builds its C encoder anew on every call); anything orjson refuses (an
    integer beyond 64 bits, a lone surrogate) goes through ``json``.
    """
    if isinstance(value, str):
        return value
    if plain_floats:
        try:
            return orjson.dumps(value).decode("utf-8")
        except orjson.JSONEncodeError:
            pass
    return _dumps(value)


def texts_of_event(kind: EventKind, data: dict[str, Any], *, plain_floats: bool = False) -> list[tuple[str, str]]:
    """The ``(source, text)`` pairs an event adds to the search: its error and its payloads' JSON text.

    ``plain_floats``: as for :func:`payload_text`.
    """
    out: list[tuple[str, str]] = []
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        out.append((SearchSource.ERROR, f"{error.get('type') or ''}: {error['message']}"[:SEARCH_TEXT_MAX_CHARS]))
    for name in _PAYLOADS.get(kind, ()):
        value = data.get(name)
        if value is None:
            continue
        out.append((SearchSource.PAYLOAD, payload_text(value, plain_floats=plain_floats)[:SEARCH_TEXT_MAX_CHARS]))
    return out


def attributes_of_event(kind: EventKind, data: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of a ``run_started``'s scalar attributes (booleans as true/false)."""
    if kind is not EventKind.RUN_STARTED:
        return []
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        return []
    out: list[tuple[str, str]] = []
    for key, value in attributes.items():
        if len(key) > ATTRIBUTE_KEY_MAX_CHARS:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            continue
        if len(text) <= ATTRIBUTE_VALUE_MAX_CHARS:
            out.append((key, text))
    return out


_WORD: Final = re.compile(r"\w+")
_RUN_ID_PREFIX: Final = re.compile(r"[0-9a-f]{4}[0-9a-f-]{0,32}")


def looks_like_run_id(text: str) -> bool:
    """Whether a search could be the start of a run id (4 to 36 lowercase hex digits and dashes)."""
    return _RUN_ID_PREFIX.fullmatch(text) is not None


def run_id_search(text: str) -> str | None:
    """The start of a run id a search could be, as run ids are stored (lowercase), or None.

    Case and surrounding spaces do not count (``01A24986-5866`` is ``01a24986-5866``): the query API, the
    CLI and the viewer look a typed id up alike.
    """
    prefix = text.strip().lower()
    return prefix if looks_like_run_id(prefix) else None


def fts_query(text: str) -> str:
    """An FTS5 query from what a user typed: every word must appear; a word written with a trailing ``*``
    matches as a prefix (``wareho*``).

    Words are quoted, so FTS5's own syntax (``AND``, ``NEAR``, ``OR``, quotes) is taken as text. Whole words
    by default: a prefix of a common word merges many long lists, far slower than a word.
    Raises ValueError when the text has no letter or digit.
    """
    return " ".join(f'"{word}"{"*" if prefix else ""}' for word, prefix in search_words(text))


def search_words(text: str) -> list[tuple[str, bool]]:
    """The words of what a user typed, each with whether it is a prefix (written with a trailing ``*``): every
    word must appear. Raises ValueError when the text has no letter or digit."""
    words = _words(text)
    if not words:
        raise ValueError("it has no letter or digit to search for")
    return words


def _words(text: str) -> list[tuple[str, bool]]:
    """The words of ``text`` (runs of ``\\w``) with whether a ``*`` follows each.

    A combining mark (Unicode category M: not ``\\w`` to Python) belongs to the word of the letter it
    follows, as the indexed text's tokenizer keeps it: ``Ze\\u0301rich`` (decomposed, NFD, as macOS writes
    it) is one word, not ``Ze`` and ``rich``. The text is first composed (NFC), so a search typed either way
    is the same word.
    """
    marks = not text.isascii()
    if marks:
        text = unicodedata.normalize("NFC", text)
    spans: list[list[int]] = []
    for match in _WORD.finditer(text):
        start, end = match.span()
        if marks:
            while end < len(text) and unicodedata.category(text[end])[0] == "M":
                end += 1
        if spans and spans[-1][1] == start:  # only combining marks between: one word
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(text[start:end], text[end : end + 1] == "*") for start, end in spans]


def hits_sql(text: str) -> tuple[str, list[Any]]:
    """The runs (``run_id`` and ``space``, its project or '') whose indexed texts match ``text``, among the
    SEARCH_HITS_MAX newest matching texts."""
    return (
        "SELECT DISTINCT run_id, space FROM (SELECT s.run_id, ifnull(s.project, '') AS space FROM search_fts f "
        "JOIN search_text s ON s.id = f.rowid WHERE search_fts MATCH ? ORDER BY f.rowid DESC LIMIT ?)",
        [fts_query(text), SEARCH_HITS_MAX],
    )


HITS_CAPPED_SQL: Final = (
    f"SELECT count(*) FROM (SELECT 1 FROM search_fts WHERE search_fts MATCH ? LIMIT {SEARCH_HITS_MAX + 1})"
)
"""More than SEARCH_HITS_MAX texts match (the answer is then over the newest of them only)."""


def search_clause(text: str) -> tuple[str, list[Any]]:
    """A condition on ``runs r``: the run has an indexed text matching ``text`` (among the newest hits)."""
    sql, params = hits_sql(text)
    return f"(r.run_id, ifnull(r.project, '')) IN ({sql})", params


def attribute_problem(key: str, value: str) -> str | None:
    """What is wrong with an ``attr.KEY=VALUE`` filter (a phrase to follow its name), or None."""
    if not key:
        return "names no attribute: write attr.KEY=VALUE"
    if len(key) > ATTRIBUTE_KEY_MAX_CHARS:
        return f"has a key longer than {ATTRIBUTE_KEY_MAX_CHARS} characters"
    if len(value) > ATTRIBUTE_VALUE_MAX_CHARS:
        return f"has a value longer than {ATTRIBUTE_VALUE_MAX_CHARS} characters"
    return None


def attribute_filters(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``attr.KEY=VALUE`` filters, each identical one once, in the order first given."""
    return tuple(dict.fromkeys(pairs))


def attribute_filters_problem(pairs: Sequence[tuple[str, str]]) -> str | None:
    """Why a listing refuses these (folded) filters (a sentence to follow the parameter's or option's name), or
    None."""
    if len(pairs) > ATTRIBUTE_FILTERS_MAX:
        return f"{len(pairs)} different filters given; give at most {ATTRIBUTE_FILTERS_MAX}"
    return None


def attribute_conditions(
    pairs: Iterable[tuple[str, str]], clause: Callable[[str, str], tuple[str, list[Any]]]
) -> tuple[list[str], list[Any]]:
    """The conditions on ``runs r`` of ``attr.`` filters (all must hold), each from ``clause`` (an engine's
    :func:`attribute_clause`): identical filters once; a key given two values is one condition no run meets
    (a run starts with one value per key), so nothing is looked up."""
    folded = attribute_filters(pairs)
    if len({key for key, _ in folded}) < len(folded):
        return [_NOTHING_MATCHES], []
    conditions: list[str] = []
    params: list[Any] = []
    for key, value in folded:
        condition, condition_params = clause(key, value)
        conditions.append(condition)
        params += condition_params
    return conditions, params


def attribute_clause(key: str, value: str) -> tuple[str, list[Any]]:
    """A condition on ``runs r``: the run started with attribute ``key`` equal to ``value`` (as text)."""
    return (
        "(r.run_id, ifnull(r.project, '')) IN "
        "(SELECT a.run_id, ifnull(a.project, '') FROM run_attributes a WHERE a.key = ? AND a.value = ?)",
        [key, value],
    )
