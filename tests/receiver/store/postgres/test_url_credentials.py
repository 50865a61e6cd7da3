"""A password holding URL delimiters: one usage error saying to percent-encode it, never a traceback or the password."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from flowledger._exceptions import ConfigError
from flowledger.receiver.store.postgres import PostgresStore, check_postgres_url, redacted

_UNESCAPED = "postgresql://postgres:Wr@ng:Pass@127.0.0.1:5999/a1"
_SECRET_PIECES = ("Wr@ng", "ng:Pass", "Pass@")


def test_an_unescaped_at_in_the_password_is_refused_without_showing_it() -> None:
    """asyncpg would cut the user part at the first @ (a piece of the password as the host): refused, naming the
    option and percent-encoding, the password hidden."""
    with pytest.raises(ConfigError) as caught:
        check_postgres_url(_UNESCAPED, option="FLOWLEDGER_DB")
    message = str(caught.value)
    assert message.startswith("FLOWLEDGER_DB postgresql://postgres:***@127.0.0.1:5999/a1 ")
    assert "%40" in message
    assert "percent-encode" in message
    assert not any(piece in message for piece in _SECRET_PIECES), message
    assert check_postgres_url("postgresql://postgres:Wr%40ng%3APass@127.0.0.1:5999/a1")  # encoded: fine


def test_a_password_cut_by_a_slash_is_never_shown() -> None:
    """A "/" in a password ends the host part early: the URL is shown as *** and the port error quotes nothing."""
    url = "postgresql://alice:pa/ss@db/ledger"
    assert "pa" not in redacted(url).removeprefix("postgresql://")
    with pytest.raises(ConfigError) as caught:
        check_postgres_url(url)
    assert "pa/ss" not in str(caught.value)
    assert "'pa'" not in str(caught.value)


def test_opening_a_url_the_driver_cannot_read_is_a_config_error_without_the_password() -> None:
    """A URL that passes the shape check but that asyncpg cannot parse: ConfigError, not its ValueError."""
    store = PostgresStore("postgresql://alice:s3cret@127.0.0.1:1/ledger?password=s3cret&bare")
    with pytest.raises(ConfigError) as caught:
        asyncio.run(store.open())
    assert "percent-encode" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("how", ["verify-option", "serve-environment"])
def test_the_cli_refuses_an_unescaped_password_in_one_line(how: str) -> None:
    """``verify --db`` and ``serve`` with FLOWLEDGER_DB exit 2 with one line naming where the URL came from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    if how == "verify-option":
        args, option = ["verify", "--db", _UNESCAPED], "--db"
    else:
        args, option = ["serve", "--port", "0"], "FLOWLEDGER_DB"
        env["FLOWLEDGER_DB"] = _UNESCAPED
    done = subprocess.run(
        [sys.executable, "-m", "flowledger", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert option in done.stderr
    assert "percent-encode" in done.stderr
    assert not any(piece in done.stderr + done.stdout for piece in _SECRET_PIECES), done.stderr
