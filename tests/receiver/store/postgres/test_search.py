"""PostgreSQL's search text: tokens cut as FTS5's unicode61 cuts them, and the tsvector and tsquery built from them."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger.receiver.store.postgres._search import LEXEME_MAX_BYTES, tokens, tsquery, tsvector

_ALPHABET = st.sampled_from(
    list("abcXYZ019 _-.,:;/'\"\\\t\n*&|!()<>@#")
    + list("éÉüÜßçñøåÆœ")  # Latin letters with and without diacritics
    + ["a\u0301", "日本", "語", "٣", "\u00b2", "\ue000"]  # a combining accent, CJK, an Arabic digit, ², private use
)


def _fts5_tokens(text: str) -> list[str]:
    """The tokens SQLite's FTS5 (unicode61, its defaults) makes of ``text``, in order."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE f USING fts5 (t)")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab (f, 'instance')")
        conn.execute("INSERT INTO f VALUES (?)", (text,))
        return [str(term) for (term,) in conn.execute("SELECT term FROM v ORDER BY offset")]
    finally:
        conn.close()


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
def test_tokens_are_fts5s(text: str) -> None:
    """For letters, digits, accents, marks, CJK and punctuation: the same tokens in the same order as FTS5."""
    assert tokens(text) == _fts5_tokens(text)


def test_the_tsvector_holds_each_token_at_its_positions() -> None:
    """Tokens are quoted lexemes with their positions from 1; quotes and backslashes cannot break out."""
    assert tsvector("Refund refund, api.example.com") == "'refund':1,2 'api':3 'example':4 'com':5"
    assert tsvector("") == ""
    long = "x" * 3000
    (lexeme,) = tsvector(long).split(":")[:1]
    assert len(lexeme.strip("'").encode()) == LEXEME_MAX_BYTES


@pytest.mark.parametrize(
    ("typed", "query"),
    [
        ("price broke", "'price' & 'broke'"),
        ("zanzib*", "'zanzib':*"),
        ("zanzibar_tra*", "('zanzibar' <-> 'tra':*)"),
        ("Café", "'cafe'"),
        ("_ dispute", "'dispute'"),
        ("'refund' & !x | y:*", "'refund' & 'x' & 'y'"),
        ("_", None),
    ],
)
def test_a_search_is_every_word_built_from_tokens(typed: str, query: str | None) -> None:
    """Every word; ``*`` a prefix; a word of several tokens a phrase; tsquery syntax typed is text."""
    assert tsquery(typed) == query


def test_a_search_without_a_word_is_refused() -> None:
    """No letter or digit at all: ValueError, which the API answers as a 400 naming q."""
    with pytest.raises(ValueError, match="no letter or digit"):
        tsquery("!!!")
