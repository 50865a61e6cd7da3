"""What a command is given and cannot use is refused before either source is asked: one line or click's usage
error, exit 2, naming the option, the same on --db and --url, never a traceback. Real subprocesses (argv bytes
that are not UTF-8 reach Python as they do from a shell) against a real receiver and its database file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._params import MAX_OFFSET
from tests.receiver._support import LiveReceiver, RunEvents, start_receiver, typical_run

_LONG = "w" * 300
"""Longer than a text query parameter may be (256 characters)."""


def _flowledger(*args: str | bytes, env: dict[str, str | bytes] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environb.items() if not k.startswith(b"FLOWLEDGER_")}
    clean |= {b"NO_COLOR": b"1", b"COLUMNS": b"200"}
    clean |= {os.fsencode(k): os.fsencode(v) for k, v in (env or {}).items()}
    command = [os.fsencode(sys.executable), b"-m", b"flowledger", *(os.fsencode(arg) for arg in args)]
    done = subprocess.run(command, capture_output=True, env=clean, timeout=60, check=False)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    )


@pytest.fixture
def stocked(live: LiveReceiver) -> tuple[LiveReceiver, RunEvents]:
    """A receiver holding one run."""
    run = typical_run()
    assert live.post(run.events).json()["accepted"] == len(run.events)
    return live, run


def _where(live: LiveReceiver, how: str) -> list[str]:
    return ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]


def _refused(done: subprocess.CompletedProcess[str], *named: str) -> str:
    """The error text of a usage error (exit 2) naming ``named``, with no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    for name in named:
        assert name in done.stderr, done.stderr
    return done.stderr


@pytest.mark.parametrize("how", ["db", "url"])
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["runs", "--workflow", b"Z\xfcrich"], "--workflow"),
        (["runs", "--user-id", b"\xff"], "--user-id"),
        (["runs", "--intent", b"\xff"], "--intent"),
        (["runs", "--attr", b"k=\xff"], "--attr"),
        (["runs", "--search", b"\xff"], "--search"),
        (["show", b"\xff"], "RUN_ID"),
        (["errors", "--workflow", b"\xff"], "--workflow"),
        (["coverage", "--workflow", b"\xff"], "--workflow"),
        (["metrics", "--workflow", b"\xff"], "--workflow"),
        (["metrics", "--node", b"\xff"], "--node"),
        (["metrics", "--label", b"k=\xff"], "--label"),
        (["purge", "--run", b"\xff"], "--run"),
        (["purge", "--workflow", b"\xff"], "--workflow"),
        (["export", "--format", "csv", "--workflow", b"\xff"], "--workflow"),
        (["runs", "--api-key", b"secret\xff"], "--api-key"),
    ],
)
def test_text_that_is_not_utf8_is_one_line_naming_the_option(
    stocked: tuple[LiveReceiver, RunEvents], how: str, args: list[str | bytes], named: str
) -> None:
    """A byte that is not UTF-8 in any text option or argument: one line, exit 2, the option named, not the value."""
    live, _ = stocked
    done = _flowledger(*args, *_where(live, how))
    error = _refused(done, named, "is not UTF-8 text")
    assert error.count("\n") == 1
    assert "secret" not in error


def test_an_environment_variable_that_is_not_utf8_is_named(stocked: tuple[LiveReceiver, RunEvents]) -> None:
    """FLOWLEDGER_API_KEY holding a byte that is not UTF-8 is named, and its value never shown."""
    live, _ = stocked
    done = _flowledger("runs", "--url", live.url, env={"FLOWLEDGER_API_KEY": b"secret\xff"})
    assert "secret" not in _refused(done, "FLOWLEDGER_API_KEY", "is not UTF-8 text")


@pytest.mark.parametrize("how", ["db", "url"])
def test_an_offset_past_the_apis_bound_is_exit_2(stocked: tuple[LiveReceiver, RunEvents], how: str) -> None:
    """--offset past MAX_OFFSET (2**62, the API's bound) is a usage error on both; MAX_OFFSET itself lists nothing."""
    live, _ = stocked
    _refused(_flowledger("runs", "--offset", str(2**63), *_where(live, how)), "--offset")
    done = _flowledger("runs", "--offset", str(MAX_OFFSET), "--json", *_where(live, how))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("origin", ["--url", "FLOWLEDGER_ENDPOINT"])
@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://127.0.0.1:abc",
        "http://h/\x01",
        "http://user:secret@127.0.0.1:abc/",
        "http://user:secret@[::1",
        "localhost:4318",
        "http://127.0.0.1:99999",
    ],
)
def test_a_url_that_is_no_receivers_is_one_line_naming_where_it_came_from(origin: str, url: str) -> None:
    """--url or FLOWLEDGER_ENDPOINT that is no http(s) URL with a host and port: one line, exit 2, no password."""
    done = _flowledger("runs", "--url", url) if origin == "--url" else _flowledger("runs", env={origin: url})
    error = _refused(done, origin, "is not a receiver's base URL")
    assert error.count("\n") == 1
    assert "secret" not in error


def test_output_files_must_name_a_file(stocked: tuple[LiveReceiver, RunEvents], tmp_path: Path) -> None:
    """-o '' and -o DIR/ of export, keygen, checkpoint and prove: usage errors naming -o, and nothing written."""
    live, run = stocked
    key = tmp_path / "signing"
    assert _flowledger("keygen", "-o", str(key)).returncode == 0
    folder = tmp_path / "sub"
    for output in ("", f"{folder}/", f"{tmp_path}/."):
        where = ["--db", str(live.db_path), "-o", output]
        _refused(_flowledger("export", "--format", "csv", *where), "--output")
        _refused(_flowledger("keygen", "-o", output), "--output")
        _refused(_flowledger("checkpoint", "--key", str(key), *where), "--output")
        _refused(_flowledger("prove", run.run_id, "--checkpoint", str(key), *where), "--output")
    assert not folder.exists()


@pytest.mark.parametrize("how", ["db", "url"])
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["runs", "--workflow", _LONG], "--workflow"),
        (["runs", "--search", _LONG], "--search"),
        (["export", "--format", "csv", "--workflow", _LONG], "--workflow"),
        (["errors", "--workflow", _LONG], "--workflow"),
        (["coverage", "--workflow", _LONG], "--workflow"),
        (["metrics", "--workflow", _LONG], "--workflow"),
        (["metrics", "--node", _LONG], "--node"),
        (["metrics", "--label", "k=" + _LONG], "--label"),
        (["metrics", "--name", _LONG], "--name"),
        (["metrics", "--name", ""], "--name"),
        (["metrics", "--name", "bad name"], "--name"),
        (["metrics", "--label", "no-equals"], "--label"),
        (["metrics", *(arg for i in range(21) for arg in ("--label", f"l{i}=v"))], "--label"),
        (["show", "RUN", "--project", "a b"], "--project"),
        (["diff", "RUN", "RUN", "--project", "a b"], "--project"),
        (["diff", "RUN", "RUN", "--project-a", "a b"], "--project-a"),
        (["prove", "RUN", "--checkpoint", "CP", "-o", "P", "--project", "a b"], "--project"),
        (["purge", "--run", "RUN", "--project", "a b"], "--project"),
        (["show", ""], "RUN_ID"),
        (["diff", "", "RUN"], "RUN_A"),
        (["purge", "--run", ""], "--run"),
    ],
)
def test_what_the_api_refuses_is_exit_2_on_both_sources(
    stocked: tuple[LiveReceiver, RunEvents], tmp_path: Path, how: str, args: list[str], named: str
) -> None:
    """A value the API's parameter rules refuse is refused by the CLI first, alike on --db and --url."""
    live, run = stocked
    args = [{"RUN": run.run_id, "CP": str(tmp_path / "cp"), "P": str(tmp_path / "p")}.get(arg, arg) for arg in args]
    (tmp_path / "cp").write_text("x")
    _refused(_flowledger(*args, *_where(live, how)), named)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("how", ["db", "url"])
@pytest.mark.parametrize("run_id", [".", ".."])
def test_a_dot_run_id_is_looked_up_as_any_other(stocked: tuple[LiveReceiver, RunEvents], how: str, run_id: str) -> None:
    """show/diff/purge of the run '.' or '..' reach the run routes on --url: "no such run", as --db says it."""
    live, run = stocked
    shown = _flowledger("show", run_id, *_where(live, how))
    assert (shown.returncode, shown.stderr.strip()) == (1, f"error: there is no run {run_id!r}")
    diffed = _flowledger("diff", run.run_id, run_id, *_where(live, how))
    assert (diffed.returncode, diffed.stderr.strip()) == (1, f"error: there is no run {run_id!r}")
    purged = _flowledger("purge", "--run", run_id, *_where(live, how))
    assert (purged.returncode, purged.stdout.strip()) == (0, "nothing to purge: no run matched"), purged.stderr
    assert live.get(f"/api/runs/{run.run_id}").status_code == 200


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A receiver with API keys, one per project."""
    config = ReceiverConfig(db_path=tmp_path / "k.db", sweep_interval_s=0, api_keys={"key-a": "proj-a"})
    receiver = start_receiver(config)
    yield receiver
    receiver.stop()


def test_the_receivers_400_is_exit_2(keyed: LiveReceiver) -> None:
    """A request the receiver refuses as given (a project other than the API key's) exits 2 with its reason."""
    run = typical_run()
    assert keyed.post(run.events, headers={"Authorization": "Bearer key-a"}).json()["accepted"] == len(run.events)
    done = _flowledger("show", run.run_id, "--project", "proj-b", "--url", keyed.url, "--api-key", "key-a")
    _refused(done, "refused the request", "project")


def test_a_checkpoint_file_named_in_another_encoding_is_read(
    stocked: tuple[LiveReceiver, RunEvents], tmp_path: Path
) -> None:
    """A path is bytes to the file system: `checkpoint -o` writes a file named in Latin-1 and `verify --checkpoint`
    reads it (only text the receiver compares must be UTF-8)."""
    live, _ = stocked
    key = os.fsencode(tmp_path / "key")
    signed = os.fsencode(tmp_path) + b"/ck\xe9.txt"
    assert _flowledger("keygen", "-o", key).returncode == 0
    assert _flowledger("checkpoint", "--key", key, "--db", str(live.db_path), "-o", signed).returncode == 0
    verified = _flowledger("verify", "--db", str(live.db_path), "--checkpoint", signed, "--key", key + b".pub")
    assert verified.returncode == 0, verified.stderr


def test_every_command_refuses_a_url_httpx_cannot_send_to_in_one_line(tmp_path: Path) -> None:
    """A host only IDNA 2008 refuses passes the shape check; export and import (which make their own clients) say
    so in one line as runs does, never with httpx's traceback."""
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text("{}\n")
    for args in (["runs"], ["export", "--format", "csv", "-o", str(tmp_path / "x.csv")], ["import", str(jsonl)]):
        done = _flowledger(*args, "--url", "http://\u2603.net")
        assert "is not a URL a request can be sent to" in _refused(done, "--url")


def test_an_endpoint_with_blanks_around_it_is_read_as_the_sdk_reads_it(stocked: tuple[LiveReceiver, RunEvents]) -> None:
    """FLOWLEDGER_ENDPOINT='URL ' (a trailing blank from a .env file) lists the runs, as the SDK sends to it."""
    live, run = stocked
    done = _flowledger("runs", "--json", env={"FLOWLEDGER_ENDPOINT": f" {live.url} "})
    assert done.returncode == 0, done.stderr
    assert run.run_id in done.stdout


def test_a_postgresql_url_in_migrate_must_be_utf8_text(tmp_path: Path) -> None:
    """migrate's options may hold a path (any bytes) but a postgresql:// URL is text sent to the server: one line,
    exit 2, naming the option (never asyncpg's traceback)."""
    target = b"postgresql://u\xff:pw@127.0.0.1:9/db"
    done = _flowledger("migrate", "--from", f"sqlite:{tmp_path / 'none.db'}", "--to", target)
    assert "is not UTF-8 text" in _refused(done, "--to")
