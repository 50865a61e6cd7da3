"""Telling a PostgreSQL URL from a SQLite path, checking its shape, and never showing its password."""

from __future__ import annotations

import pytest

from flowledger._exceptions import ConfigError
from flowledger.receiver.store.postgres import check_postgres_url, is_postgres_url, redacted


def test_postgresql_and_postgres_schemes_select_the_engine() -> None:
    """Both libpq spellings name PostgreSQL; a path (even one with a colon) is a SQLite file."""
    assert is_postgres_url("postgresql://u@h/db")
    assert is_postgres_url("POSTGRES://u@h/db")
    assert not is_postgres_url("flowledger.db")
    assert not is_postgres_url("sqlite:flowledger.db")
    assert not is_postgres_url("C:/data/flowledger.db")


def test_the_password_is_replaced_wherever_the_url_is_shown() -> None:
    """redacted() hides the password and keeps the rest; a URL without one is unchanged."""
    assert (
        redacted("postgresql://alice:s3cret@db.internal:5433/ledger")
        == "postgresql://alice:***@db.internal:5433/ledger"
    )
    assert redacted("postgresql://alice@db/ledger") == "postgresql://alice@db/ledger"
    shown = redacted("postgresql://alice@db/ledger?sslmode=require&password=s3cret")  # libpq reads it there too
    assert "s3cret" not in shown
    assert shown == "postgresql://alice@db/ledger?sslmode=require&password=***"
    assert "s3cret" not in redacted("postgresql://alice:s3cret@db/ledger?PASSWORD=s3cret")


def test_every_query_value_is_replaced_when_asked() -> None:
    """For a receiver's URL each query value is hidden (a token may sit under any name), the fragment dropped."""
    assert (
        redacted("http://ann:pw@h:1/base?token=t&bare&empty=#frag", every_query_value=True)
        == "http://ann:***@h:1/base?token=***&***&empty=***"
    )
    assert redacted("http://h:1/base", every_query_value=True) == "http://h:1/base"
    assert redacted("http://[::1/?token=t", every_query_value=True) == "http://***"  # not a URL: all of it hidden


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://alice:s3cret@db:99999/ledger", "not a valid PostgreSQL URL"),
        ("postgresql://alice:s3cret@db/", "names no database"),
        ("postgresql://alice:s3cret@db:0/ledger", "port 0"),
        ("mysql://alice:s3cret@db/ledger", "not a PostgreSQL URL"),
    ],
)
def test_a_bad_url_is_one_error_naming_the_option_without_the_password(url: str, problem: str) -> None:
    """Each shape error names the option and the problem, and never prints the password."""
    with pytest.raises(ConfigError) as caught:
        check_postgres_url(url, option="FLOWLEDGER_DB")
    message = str(caught.value)
    assert message.startswith("FLOWLEDGER_DB ")
    assert problem in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:pw@127.0.0.1:5432/ledger?sslmode=disable",
        "postgresql:///ledger",  # libpq's default local socket
        "postgresql://alice@db1:5432,db2:5433/ledger?target_session_attrs=read-write",  # several hosts
    ],
)
def test_a_good_url_is_returned_as_given(url: str) -> None:
    """A URL libpq takes, with a database, passes unchanged (whether the server answers is found on open)."""
    assert check_postgres_url(url) == url
