"""``flowledger serve --db postgresql://...`` (and ``FLOWLEDGER_DB``): the receiver and the CLI on PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import httpx
import pytest

from tests._serve import serve_process
from tests.receiver._support import simple_run, typical_run

START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    return {**env, **extra}


def _flowledger(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowledger", *args], capture_output=True, text=True, env=env or _env(), timeout=120
    )


@pytest.mark.slow
@pytest.mark.parametrize("how", ["option", "environment"])
def test_serve_stores_in_postgres_and_the_cli_reads_it_there(postgres_url: str, how: str) -> None:
    """Events posted to a receiver on PostgreSQL are listed by the API and by runs/show/verify --db URL; its error
    groups, statistics, custom metrics and search answer there, and through errors/stats/runs --search --db URL."""
    runs = [typical_run(), simple_run()]
    if how == "option":
        args, env = ["--db", postgres_url], _env()
    else:
        args, env = [], _env(FLOWLEDGER_DB=postgres_url)
    with serve_process(args, env) as (url, _child):
        body = {"events": [e for run in runs for e in run.events]}
        answer = httpx.post(f"{url}/v1/events", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        listed = httpx.get(f"{url}/api/runs", timeout=30).json()
        detail = httpx.get(f"{url}/api/runs/{runs[0].run_id}", timeout=30).json()
        errors = httpx.get(f"{url}/api/errors", timeout=30)
        stats = httpx.get(f"{url}/api/stats", params={"by": "node"}, timeout=30)
        metrics = httpx.get(f"{url}/api/metrics/custom", timeout=30)
        searched = httpx.get(f"{url}/api/runs", params={"q": "price broke"}, timeout=30)
        viewed = httpx.get(f"{url}/api/viewer/runs", params={"q": "broke"}, timeout=30)
        nul = [
            httpx.get(f"{url}{path}", timeout=30).status_code
            for path in ("/api/runs/abc%00", "/api/runs?workflow_id=a%00b", "/api/runs/abc%00/outputs")
        ]
    assert {r["run_id"] for r in listed["runs"]} == {run.run_id for run in runs}
    assert errors.status_code == 200, errors.text
    assert {(g["node_id"], g["message"]) for g in errors.json()["groups"]} == {("price", "price broke")}
    assert stats.status_code == 200, stats.text
    assert {g["key"] for g in stats.json()["groups"]} >= {"order-intake/fetch", "order-intake/price"}
    assert metrics.status_code == 200, metrics.text
    assert [r["run_id"] for r in searched.json()["runs"]] == [runs[0].run_id]
    assert viewed.status_code == 200, viewed.text
    assert [r["run_id"] for r in viewed.json()["runs"]] == [runs[0].run_id]
    assert nul == [400, 400, 400]  # PostgreSQL cannot compare text with a NUL: refused before any query
    out = _flowledger("runs", "--db", postgres_url, "--json")
    assert out.returncode == 0, out.stderr
    assert {r["run_id"] for r in json.loads(out.stdout)["runs"]} == {run.run_id for run in runs}
    shown = _flowledger("show", runs[0].run_id, "--db", postgres_url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == detail["status"]
    assert len(json.loads(shown.stdout)["nodes"]) == len(detail["nodes"]) > 0
    grouped = _flowledger("errors", "--db", postgres_url, "--json")
    assert grouped.returncode == 0, grouped.stderr
    assert json.loads(grouped.stdout)["groups"] == errors.json()["groups"]
    counted = _flowledger("stats", "--by", "node", "--db", postgres_url, "--json")
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["groups"] == stats.json()["groups"]
    found = _flowledger("runs", "--search", "broke", "--db", postgres_url, "--json")
    assert found.returncode == 0, found.stderr
    assert [r["run_id"] for r in json.loads(found.stdout)["runs"]] == [runs[0].run_id]
    verified = _flowledger("verify", "--db", postgres_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://alice:s3cret@db.internal/", "names no database"),
        ("postgresql://alice:s3cret@db.internal:70000/ledger", "not a valid PostgreSQL URL"),
    ],
)
@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_bad_url_is_a_usage_error_naming_where_it_came_from_without_the_password(
    url: str, problem: str, how: str
) -> None:
    """A malformed URL exits 2 before serving, naming --db or FLOWLEDGER_DB, the password shown as ***."""
    if how == "option":
        done = _flowledger("serve", "--db", url, "--port", "0")
    else:
        done = _flowledger("serve", "--port", "0", env=_env(FLOWLEDGER_DB=url))
    assert done.returncode == 2
    assert problem in done.stderr
    assert ("--db" if how == "option" else "FLOWLEDGER_DB") in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
    assert "alice:***@" in done.stderr


def test_a_server_that_does_not_answer_is_one_error_line_without_the_password() -> None:
    """Nothing listening at the URL: one line naming the database (password hidden), exit 1, no traceback."""
    port = _free_port()
    done = _flowledger("serve", "--db", f"postgresql://alice:s3cret@127.0.0.1:{port}/ledger", "--port", "0")
    assert done.returncode == 1
    assert "cannot open the database postgresql://alice:***@127.0.0.1" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["runs"], ["verify"], ["serve", "--port", "0"]])
def test_a_role_without_rights_on_the_tables_is_one_error_line(postgres_url: str, command: list[str]) -> None:
    """A role that may connect but not read the ledger's tables: one line naming the database and PostgreSQL's
    reason, exit 1, where it was an asyncpg traceback."""
    import asyncio
    from urllib.parse import urlsplit

    import asyncpg

    from flowledger.receiver.store.postgres import PostgresStore

    async def schema_and_outsider() -> None:
        store = PostgresStore(postgres_url, pool_min=1, pool_max=1)
        await store.open()  # the owner makes the schema
        await store.close()
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute("DROP ROLE IF EXISTS flowledger_outsider")
            await conn.execute("CREATE ROLE flowledger_outsider LOGIN")
        finally:
            await conn.close()

    asyncio.run(schema_and_outsider())
    parts = urlsplit(postgres_url)
    url = parts._replace(netloc=f"flowledger_outsider@{parts.hostname}:{parts.port}").geturl()
    done = _flowledger(command[0], "--db", url, *command[1:])
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot open the database postgresql://flowledger_outsider@")
    assert "permission denied" in line
