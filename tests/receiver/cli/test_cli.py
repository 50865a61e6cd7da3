"""The receiver's CLI commands on --db and --url: tables, --json, export, rebuild, clean errors."""

from __future__ import annotations

import csv
import http.server
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from flowledger.receiver.cli._analytics import errors_command, stats_command
from flowledger.receiver.cli._commands import (
    COMMANDS,
    export_command,
    rebuild_command,
    runs_command,
    show_command,
    verify_command,
)
from flowledger.receiver.store import _sqlite
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, typical_run


@pytest.fixture
def filled(live: LiveReceiver) -> tuple[LiveReceiver, list[RunEvents]]:
    """A receiver with five runs, one failed."""
    runs = [typical_run(), *(simple_run() for _ in range(4))]
    live.post([e for run in runs for e in run.events])
    return live, runs


def _where(live: LiveReceiver, how: str) -> list[str]:
    return ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]


def test_commands_are_the_contract_names() -> None:
    """COMMANDS holds serve, runs, show, export, verify, rebuild and import."""
    assert [c.name for c in COMMANDS] == ["serve", "runs", "show", "export", "verify", "rebuild", "import"]


def test_importing_the_cli_module_is_cheap() -> None:
    """Importing the commands does not import the server, the database driver or rich."""
    code = (
        "import sys, flowledger.receiver.cli._commands; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'aiosqlite', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("how", ["db", "url"])
def test_runs_json_lists_newest_first(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """runs --json prints the same listing from the file and from the receiver."""
    live, runs = filled
    result = CliRunner().invoke(runs_command, ["--json", *_where(live, how)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["total"] == len(runs)
    starts = [r["started_at"] for r in body["runs"]]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize("how", ["db", "url"])
def test_runs_table_and_filters(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """runs prints a table; --status narrows it."""
    live, _runs = filled
    result = CliRunner().invoke(runs_command, ["--status", "failed", *_where(live, how)])
    assert result.exit_code == 0, result.output
    assert "1 of 1 runs" in result.output
    assert "failed" in result.output


@pytest.mark.parametrize("how", ["db", "url"])
def test_runs_status_repeats(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """runs --status failed --status succeeded lists the runs in either status."""
    live, runs = filled
    result = CliRunner().invoke(runs_command, ["--json", "--status", "failed", *_where(live, how)])
    assert json.loads(result.output)["total"] == 1
    both = ["--json", "--status", "failed", "--status", "succeeded", *_where(live, how)]
    result = CliRunner().invoke(runs_command, both)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"] == len(runs)


@pytest.mark.parametrize("how", ["db", "url"])
def test_runs_json_pages_with_the_next_cursor(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """runs --json gives next; --cursor NEXT lists the following page, until next is null."""
    live, runs = filled
    seen: list[str] = []
    args = ["--json", "--limit", "2", *_where(live, how)]
    while True:
        result = CliRunner().invoke(runs_command, args)
        assert result.exit_code == 0, result.output
        body = json.loads(result.output)
        seen += [r["run_id"] for r in body["runs"]]
        if body["next"] is None:
            break
        args = ["--json", "--limit", "2", "--cursor", body["next"], *_where(live, how)]
    assert sorted(seen) == sorted(r.run_id for r in runs)
    assert len(seen) == len(runs)
    bad = CliRunner().invoke(runs_command, ["--cursor", "nonsense", *_where(live, how)])
    assert bad.exit_code == 2


@pytest.mark.parametrize("how", ["db", "url"])
def test_show_prints_the_run_and_its_nodes(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """show RUN_ID prints the run's status, error and every node attempt; --json the API shape."""
    live, runs = filled
    run_id = runs[0].run_id
    table = CliRunner().invoke(show_command, [run_id, *_where(live, how)])
    assert table.exit_code == 0, table.output
    assert "failed" in table.output
    assert "notify" in table.output
    as_json = CliRunner().invoke(show_command, [run_id, "--json", *_where(live, how)])
    assert len(json.loads(as_json.output)["nodes"]) == 6


@pytest.mark.parametrize("how", ["db", "url"])
@pytest.mark.parametrize("run_id", ["no-such-run", "a?c=1", "a/b", "x#y"])
def test_show_unknown_run_is_one_error_line(
    filled: tuple[LiveReceiver, list[RunEvents]], how: str, run_id: str
) -> None:
    """show of an unknown id exits 1 with one line on stderr, over --url too when the id holds ``?``, ``/`` or
    ``#`` (sent as they were, they made a query, another route or a fragment of it)."""
    live, _ = filled
    result = CliRunner().invoke(show_command, [run_id, *_where(live, how)])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: there is no run {run_id!r}"


@pytest.mark.parametrize("how", ["db", "url"])
def test_export_csv_and_jsonl_to_a_file(filled: tuple[LiveReceiver, list[RunEvents]], how: str, tmp_path: Path) -> None:
    """export writes CSV rows or JSONL runs with nodes to -o FILE."""
    live, runs = filled
    out = tmp_path / "runs.csv"
    assert CliRunner().invoke(export_command, ["--format", "csv", "-o", str(out), *_where(live, how)]).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sorted(r["run_id"] for r in rows) == sorted(r.run_id for r in runs)
    result = CliRunner().invoke(export_command, ["--format", "jsonl", *_where(live, how)])
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == len(runs)
    assert sum(len(run["nodes"]) for run in lines) == 6 + 4


def test_export_streams_in_chunks_without_losing_rows(
    filled: tuple[LiveReceiver, list[RunEvents]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyset paging over small chunks still yields every run once, newest first."""
    live, runs = filled
    monkeypatch.setattr(_sqlite, "_STREAM_CHUNK", 2)
    result = CliRunner().invoke(export_command, ["--format", "jsonl", "--db", str(live.db_path)])
    ids = [json.loads(line)["run_id"] for line in result.output.splitlines()]
    assert sorted(ids) == sorted(r.run_id for r in runs)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("how", ["db", "url"])
def test_rebuild_reports_no_drift_on_a_clean_store(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """rebuild refolds every event and finds the projections matched."""
    live, _ = filled
    result = CliRunner().invoke(rebuild_command, ["--json", *_where(live, how)])
    assert result.exit_code == 0, result.output
    drift = json.loads(result.output)
    assert drift["clean"] is True
    assert drift["events"] == 15 + 4 * 4


def test_rebuild_finds_and_repairs_drift(filled: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """A projection row changed or deleted by hand is reported as drift and refolded from the ledger."""
    live, runs = filled
    with sqlite3.connect(live.db_path) as conn:
        conn.execute("UPDATE runs SET status = 'succeeded' WHERE run_id = ?", (runs[0].run_id,))
        conn.execute("DELETE FROM runs WHERE run_id = ?", (runs[1].run_id,))
        conn.execute("DELETE FROM node_runs WHERE run_id = ?", (runs[2].run_id,))
    result = CliRunner().invoke(rebuild_command, ["--db", str(live.db_path)])
    assert result.exit_code == 0, result.output
    assert "1 runs changed" in result.output
    assert runs[1].run_id in result.output
    assert "node attempts missing" in result.output
    assert live.get(f"/api/runs/{runs[0].run_id}").json()["status"] == "failed"
    again = CliRunner().invoke(rebuild_command, ["--json", "--url", live.url])
    assert json.loads(again.output)["clean"] is True


def test_unreachable_url_is_one_error_line() -> None:
    """A receiver that is not there is reported in one line, exit 1."""
    result = CliRunner().invoke(runs_command, ["--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot reach the receiver")
    assert len(result.output.strip().splitlines()) == 1


def test_db_and_url_together_is_a_usage_error(tmp_path: Path) -> None:
    """--db and --url at once is refused."""
    result = CliRunner().invoke(runs_command, ["--db", str(tmp_path / "x.db"), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2


def test_url_defaults_to_flowledger_endpoint(
    filled: tuple[LiveReceiver, list[RunEvents]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without --db or --url the commands read $FLOWLEDGER_ENDPOINT."""
    live, runs = filled
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWLEDGER_ENDPOINT", live.url)
    result = CliRunner().invoke(runs_command, ["--json"])
    assert json.loads(result.output)["total"] == len(runs)


def test_not_a_database_is_one_error_line(tmp_path: Path) -> None:
    """A --db file that is not SQLite is a clear error, not a traceback."""
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    result = CliRunner().invoke(runs_command, ["--db", str(bogus)])
    assert result.exit_code == 1
    assert "not a flowledger database" in result.output


def test_serve_with_an_unusable_database_is_one_error_line(tmp_path: Path) -> None:
    """serve refuses a --db it cannot open, or that is not flowledger's, before starting the server."""
    from flowledger.receiver.cli._commands import serve_command

    missing_dir = CliRunner().invoke(serve_command, ["--db", str(tmp_path / "no" / "such" / "x.db"), "--port", "0"])
    assert missing_dir.exit_code == 1
    assert missing_dir.output.startswith("error: cannot open the database")
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"not a database" * 200)
    result = CliRunner().invoke(serve_command, ["--db", str(bogus), "--port", "0"])
    assert result.exit_code == 1
    assert "not a flowledger database" in result.output


def _flowledger(args: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the real ``flowledger`` command in a child process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flowledger", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        check=False,
        **kwargs,
    )


@pytest.mark.parametrize("how", ["env", "option"])
def test_an_unsendable_api_key_is_one_line_that_never_shows_it(live: LiveReceiver, how: str) -> None:
    """A key with a line break (env or --api-key) is refused in one stderr line naming its origin, not the key."""
    key = "s3cr3t-key-value\n"
    if how == "env":
        result = _flowledger(["runs", "--url", live.url], env={"FLOWLEDGER_API_KEY": key})
        origin = "FLOWLEDGER_API_KEY"
    else:
        result = _flowledger(["runs", "--url", live.url, "--api-key", key])
        origin = "--api-key"
    assert result.returncode == 2  # a key that cannot be sent: a usage error
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {origin} holds a line break at character 17 of 17")
    assert "s3cr3t" not in result.stderr


def test_a_receiver_key_that_cannot_be_sent_is_refused_without_showing_it() -> None:
    """The receiver's own key list refuses a token no client could send, without echoing the token."""
    from flowledger._exceptions import ConfigError
    from flowledger.receiver._auth import ApiKeys

    with pytest.raises(ConfigError) as caught:
        ApiKeys({"good-key": "p1", "bad key\n": "p2"})
    assert "API key 2 holds a space" in str(caught.value)
    assert "p2" not in str(caught.value)
    assert "bad" not in str(caught.value)


def _other_application_db(path: Path) -> bytes:
    """An SQLite file of another application (no application id, one table); return its bytes."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_serve_refuses_another_applications_database_untouched(tmp_path: Path) -> None:
    """serve --db on another application's non-empty SQLite file says so in one line, exits 1, changes nothing."""
    other = tmp_path / "other.db"
    before = _other_application_db(other)
    result = _flowledger(["serve", "--db", str(other), "--port", "0"])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {other} is an SQLite database of another application (it holds customers)")
    assert other.read_bytes() == before
    assert not (tmp_path / "other.db-wal").exists()


@pytest.mark.parametrize("command", [["runs"], ["show", "some-run"], ["export", "--format", "csv"], ["verify"]])
def test_db_readers_refuse_another_applications_database(tmp_path: Path, command: list[str]) -> None:
    """runs/show/export/verify --db on another application's database name it in one line and exit 1."""
    other = tmp_path / "other.db"
    _other_application_db(other)
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA user_version = 7")  # an application numbering its own schema: not a newer flowledger
    conn.close()
    result = _flowledger([*command, "--db", str(other)])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "is an SQLite database of another application (it holds customers)" in lines[0]
    assert "upgrade" not in lines[0]


def test_serve_still_takes_an_empty_sqlite_file(tmp_path: Path) -> None:
    """An empty file, or an SQLite file with no tables, is not another application's: the store migrates it."""
    from flowledger.receiver.store._sqlite import prepare_file

    empty = tmp_path / "empty.db"
    empty.touch()
    prepare_file(empty)
    blank = tmp_path / "blank.db"
    sqlite3.connect(blank).close()
    prepare_file(blank)
    for path in (empty, blank):
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'ledger'").fetchone() == (1,)
        conn.close()


def test_serve_on_a_busy_port_says_only_that(tmp_path: Path) -> None:
    """serve --port BUSY prints one line about the port, never a serving banner or startup log, and exits 1."""
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        result = _flowledger(["serve", "--db", str(tmp_path / "f.db"), "--port", str(port)])
    finally:
        busy.close()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: cannot listen on 127.0.0.1:{port}: address already in use; stop what uses it or pass another --port"
    ]
    assert result.stdout == ""


def test_serve_on_an_address_not_of_this_machine_says_so_and_makes_no_database(tmp_path: Path) -> None:
    """--host that is no address here is one line pointing at --host (not "pass another --port"), exit 1, and the
    database file is not made."""
    result = _flowledger(["serve", "--db", str(tmp_path / "f.db"), "--host", "999.1.1.1", "--port", "0"])
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot listen on 999.1.1.1:0: ")
    assert line.endswith("; pass an address of this machine as --host")
    assert not (tmp_path / "f.db").exists()


@pytest.mark.parametrize(
    ("keys", "file_keys", "expected"),
    [
        ("bad key=p", None, "error: the key of entry 1 of FLOWLEDGER_RECEIVER_API_KEYS holds a space at character 4"),
        ("sekr3tKey=shop,sekr3tKey=bank", None, "error: FLOWLEDGER_RECEIVER_API_KEYS gives one key as entries 1 and 2"),
        (
            "sekr3tKey-0123456789=shop",
            "sekr3tKey-0123456789",
            "error: entry 1 of FLOWLEDGER_RECEIVER_API_KEYS is a key of the API key file",
        ),
    ],
)
def test_serve_refuses_bad_or_repeated_keys_before_it_claims_to_serve(
    tmp_path: Path, keys: str, file_keys: str | None, expected: str
) -> None:
    """A key that cannot be sent, or one key given twice (bound to whichever project came last, before), is one
    error line and exit 2, with no serving banner, no database made and no key in the message."""
    command = ["serve", "--db", str(tmp_path / "f.db"), "--port", "0"]
    if file_keys is not None:
        (tmp_path / "keys.toml").write_text(f'[keys]\n"{file_keys}" = "bank"\n')
        command += ["--api-keys", str(tmp_path / "keys.toml")]
    result = _flowledger(command, env={"FLOWLEDGER_RECEIVER_API_KEYS": keys})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(expected)
    assert "sekr3tKey" not in line
    assert result.stdout == ""
    assert not (tmp_path / "f.db").exists()


@pytest.mark.parametrize("command", ["serve", "runs", "verify"])
def test_a_database_url_of_another_kind_is_refused_without_its_password(tmp_path: Path, command: str) -> None:
    """--db mysql://... was taken for a SQLite file name; it is a usage error naming the scheme only."""
    result = _flowledger([command, "--db", "mysql://user:pw123@db.example/app"], cwd=tmp_path)
    assert result.returncode == 2
    assert "mysql:// is not a database flowledger takes" in result.stderr
    assert "pw123" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_into_a_closed_pipe_stops_quietly(live: LiveReceiver, fmt: str) -> None:
    """export ... | head: when the reader goes away, no error line, exit 141 as SIGPIPE would give."""
    runs = [typical_run() for _ in range(400)]
    live.post([e for run in runs for e in run.events])
    child = subprocess.Popen(
        [sys.executable, "-m", "flowledger", "export", "--format", fmt, "--db", str(live.db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")},
    )
    assert child.stdout is not None
    assert child.stderr is not None
    first = child.stdout.readline()
    child.stdout.close()  # what head does after its lines
    stderr = child.stderr.read().decode()
    child.stderr.close()
    assert child.wait(timeout=60) == 141
    assert first
    assert stderr == ""


def _serve_process(db: Path, port: int) -> subprocess.Popen[str]:
    """``flowledger serve`` on ``db`` and ``port`` in a process of its own, no FLOWLEDGER_ variable inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    command = [sys.executable, "-m", "flowledger", "serve", "--db", str(db), "--port", str(port)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_serve_stopped_with_ctrl_c_exits_0_without_an_error_line(tmp_path: Path) -> None:
    """SIGINT is how a receiver is stopped: it shuts down and exits 0, with no "error: interrupted"."""
    import signal
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = _serve_process(tmp_path / "f.db", port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert child.poll() is None, "the receiver exited"
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert "error:" not in err
    assert err.splitlines()[0] == f"flowledger receiver on http://127.0.0.1:{port} with {tmp_path / 'f.db'}"


@pytest.mark.parametrize("delay_s", [0.2, 0.35, 0.5, 0.65, 0.8, 1.0])
def test_ctrl_c_while_serve_starts_always_stops_it(tmp_path: Path, delay_s: float) -> None:
    """SIGINT at any moment of the start (imports, migrations, garbage collection, the event loop's set-up)
    stops the receiver: before its banner with "error: interrupted" and exit 1, after it with exit 0; never
    a receiver that goes on serving, never a traceback from flowledger's own code."""
    import signal
    import time

    child = _serve_process(tmp_path / "f.db", 0)
    try:
        time.sleep(delay_s)
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    if child.returncode == -signal.SIGINT:  # Python still starting or importing flowledger itself (a slow host)
        assert "flowledger receiver on" not in err, err
        return
    assert child.returncode in (0, 1), err
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err
    if child.returncode == 1:  # click's own words while it still reads the command line, ours after
        assert err.splitlines()[-1] in ("error: interrupted", "Aborted!"), err
    else:
        assert err.startswith("flowledger receiver on http://127.0.0.1:"), err
        assert "error:" not in err, err


class _NotAReceiver(http.server.BaseHTTPRequestHandler):
    """A web server that is not flowledger's: an HTML 404 under /html, a JSON object of another shape under /obj,
    a JSON list elsewhere."""

    def do_GET(self) -> None:
        if self.path.startswith("/html"):
            body, status, kind = b"<html><body>Not Found</body></html>", 404, "text/html"
        elif self.path.startswith("/obj"):
            body, status, kind = b'{"status": "ok"}', 200, "application/json"
        else:
            body, status, kind = b'["not", "an", "object"]', 200, "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def not_a_receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/html", "/obj", ""])
@pytest.mark.parametrize(
    ("command", "args"),
    [
        (runs_command, []),
        (show_command, ["some-run"]),
        (verify_command, []),
        (stats_command, []),
        (errors_command, []),
        (rebuild_command, []),
        (export_command, ["--format", "jsonl"]),
    ],
    ids=["runs", "show", "verify", "stats", "errors", "rebuild", "export"],
)
def test_a_url_that_is_not_a_receiver_is_one_error_line(
    not_a_receiver: str, path: str, command: click.Command, args: list[str]
) -> None:
    """--url naming another server (or a path under one) is one clear line and exit 1, never a traceback."""
    result = CliRunner().invoke(command, [*args, "--url", not_a_receiver + path])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.output.startswith(f"error: {not_a_receiver + path}"), result.output
    assert "is --url a flowledger receiver's address?" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_password_in_the_url_is_not_shown(not_a_receiver: str) -> None:
    """The URL in an error line has its user part replaced by *** (the SDK's masking, the name with the password)."""
    url = not_a_receiver.replace("http://", "http://ann:s3cret@") + "/html"
    result = CliRunner().invoke(runs_command, ["--url", url])
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert "http://***@" in result.output
    assert "ann" not in result.output
    unreachable = CliRunner().invoke(runs_command, ["--url", "http://ann:s3cret@127.0.0.1:9"])
    assert unreachable.exit_code == 1
    assert "s3cret" not in unreachable.output


def test_a_token_in_the_urls_query_is_not_shown(not_a_receiver: str) -> None:
    """Every query value of --url is replaced by *** in an error line (a token may sit under any name)."""
    url = not_a_receiver + "/html?token=s3cret&s3cret-alone&mode=plain"
    result = CliRunner().invoke(runs_command, ["--url", url])
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert "plain" not in result.output
    assert result.output.startswith(f"error: {not_a_receiver}/html?token=***&***&mode=***"), result.output
    unreachable = CliRunner().invoke(runs_command, ["--url", "http://ann:pw@127.0.0.1:9/?key=s3cret#s3cret"])
    assert unreachable.exit_code == 1
    assert "s3cret" not in unreachable.output
    assert "pw" not in unreachable.output
    assert "http://***@127.0.0.1:9/?key=***" in unreachable.output
