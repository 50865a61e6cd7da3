"""The PostgreSQL database stopped under a receiver and under the CLI: 503 with Retry-After and one ``error:`` line.

A cluster of this module's own (the session's one is shared by every test) is
stopped with ``pg_ctl -m fast stop`` while a real ``flowledger serve`` runs
on it, and started again on the same port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from flowledger._exceptions import StoreError
from flowledger.receiver.store._integrity import ReconcileScope
from flowledger.receiver.store._protocol import RunQuery
from flowledger.receiver.store._tree import PROOF_CHUNK
from flowledger.receiver.store.postgres import PostgresStore
from tests._postgres import _as_owner, postgres_bindir, postgres_cluster
from tests._serve import serve_process
from tests.receiver._support import RunEvents, simple_run, typical_run

START_TIMEOUT_S = 60.0
pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    """A cluster the test may stop and start again on the same port and sockets."""

    url: str
    bindir: Path
    data: str
    options: str

    def _pg_ctl(self, *args: str) -> None:
        done = subprocess.run(
            _as_owner([str(self.bindir / "pg_ctl"), "-D", self.data, *args]),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def running(self) -> bool:
        done = subprocess.run(
            _as_owner([str(self.bindir / "pg_ctl"), "-D", self.data, "status"]), capture_output=True, check=False
        )
        return done.returncode == 0

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl("-o", self.options, "-l", str(Path(self.data).parent / "log"), "-w", "start")


@pytest.fixture(scope="module")
def cluster(postgres_server: str) -> Iterator[Cluster]:
    """A cluster of the module's own (``postgres_server`` only so that a missing PostgreSQL skips alike)."""
    bindir = postgres_bindir()
    assert bindir is not None
    with postgres_cluster() as url:

        async def settings() -> tuple[str, str]:
            conn = await asyncpg.connect(url)
            try:
                return str(await conn.fetchval("SHOW data_directory")), str(
                    await conn.fetchval("SHOW unix_socket_directories")
                )
            finally:
                await conn.close()

        data, sockets = asyncio.run(settings())
        port = url.rsplit(":", 1)[1].split("/", 1)[0]
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} -c fsync=off"
        yield Cluster(url=url, bindir=bindir, data=data, options=options)


@pytest.fixture
def database(cluster: Cluster) -> Iterator[str]:
    """A fresh database in the module's cluster; the cluster is running again after the test."""
    name = f"outage_{os.getpid()}_{time.monotonic_ns()}"

    async def create() -> None:
        conn = await asyncpg.connect(cluster.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    yield cluster.url.rsplit("/", 1)[0] + "/" + name
    if not cluster.running():
        cluster.start()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}


def _post_runs(url: str, runs: int) -> list[str]:
    made = [typical_run() if i % 2 else simple_run() for i in range(runs)]
    body = {"events": [e for run in made for e in run.events]}
    answer = httpx.post(f"{url}/v1/events", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return [run.run_id for run in made]


def test_every_route_answers_503_with_retry_after_while_the_database_is_down(cluster: Cluster, database: str) -> None:
    """With PostgreSQL stopped, reads, /metrics, purges, rebuild, reconcile and export answer 503 with Retry-After
    (export before its first byte), each logged in a line without a traceback; reads answer again once it is back."""
    with serve_process(["--db", database], _env()) as (url, child):
        run_id = _post_runs(url, 2)[0]
        assert httpx.get(f"{url}/api/runs/{run_id}", timeout=30).status_code == 200
        cluster.stop()
        answers: dict[str, httpx.Response] = {}
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/api/runs", {}),
            ("GET", f"/api/runs/{run_id}", {}),
            ("GET", "/api/verify", {}),
            ("GET", "/api/stats", {}),
            ("GET", "/metrics", {}),
            ("GET", "/api/export", {}),
            ("GET", "/api/export?format=csv", {}),
            ("GET", "/api/reconcile", {}),
            ("POST", "/api/reconcile", {}),
            ("POST", "/api/rebuild", {}),
            ("DELETE", f"/api/runs/{run_id}", {}),
            ("POST", "/api/purge", {"json": {"workflow_id": "order-intake"}}),
            ("GET", f"/api/tree/runs/{run_id}?size=1", {}),  # not a 404: the tree was not found too small
            ("GET", "/api/viewer/runs", {}),
            ("GET", f"/api/viewer/runs/{run_id}", {}),
        ]
        for method, path, extra in requests:
            answers[f"{method} {path}"] = httpx.request(method, f"{url}{path}", timeout=30, **extra)
        cluster.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while (back := httpx.get(f"{url}/api/runs/{run_id}", timeout=30)).status_code != 200:
            assert time.monotonic() < deadline, back.text
            time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        _out, log = child.communicate(timeout=30)
    refused = {name: (a.status_code, a.headers.get("retry-after"), a.text[:200]) for name, a in answers.items()}
    assert {name: (status, retry) for name, (status, retry, _text) in refused.items()} == dict.fromkeys(
        answers, (503, "1")
    ), refused
    assert "Traceback" not in log, log
    assert log.count("answered 503") == len(requests), log


def test_an_export_cut_by_the_database_stopping_ends_incomplete_and_logs_one_line(
    cluster: Cluster, database: str
) -> None:
    """The database stopping while /api/export streams ends the chunked body unfinished, with no traceback."""
    with serve_process(["--db", database], _env()) as (url, child):
        _post_runs(url, 400)
        with httpx.stream("GET", f"{url}/api/export", timeout=60) as streamed:
            assert streamed.status_code == 200
            chunks = streamed.iter_bytes()
            next(chunks)  # the export is under way: the rest waits for this reader
            cluster.stop()
            with pytest.raises(httpx.RemoteProtocolError):
                for _chunk in chunks:
                    pass
        cluster.start()
        child.send_signal(signal.SIGINT)
        _out, log = child.communicate(timeout=30)
    assert "Traceback" not in log, log
    assert "an export stopped part way" in log, log


def test_the_cli_export_cut_by_the_database_stopping_prints_one_error_line(cluster: Cluster, database: str) -> None:
    """``export --db URL`` losing its connection part way exits 1 with one ``error:`` line, no traceback."""
    with serve_process(["--db", database], _env()) as (url, _child):
        _post_runs(url, 400)
    exporting = subprocess.Popen(
        [sys.executable, "-m", "flowledger", "export", "--format", "jsonl", "--db", database],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert exporting.stdout is not None
    exporting.stdout.readline()  # under way; it blocks on a full pipe until this test reads on
    time.sleep(0.5)
    cluster.stop()
    _rest, err = exporting.communicate(timeout=60)
    cluster.start()
    text = err.decode()
    assert exporting.returncode == 1, text
    assert "Traceback" not in text, text
    assert text.startswith("error: "), text
    assert text.count("\n") == 1, text


def test_store_reads_and_writes_raise_store_error_while_the_database_is_down(cluster: Cluster, database: str) -> None:
    """An open store whose server stopped raises StoreError from its reads, its writes and mid-iteration,
    and answers again once the server is back."""

    async def scenario() -> tuple[list[str], int]:
        store = PostgresStore(database, pool_max=2)
        await store.open()
        try:
            failures: list[str] = []
            cluster.stop()
            attempts: dict[str, Callable[[], Awaitable[object]]] = {
                "verify": store.verify,
                "stats": store.stats,
                "list_runs": lambda: store.list_runs(RunQuery()),
                "get_run": lambda: store.get_run("r"),
                "tree_head": store.tree_head,
                "rebuild": store.rebuild,
                "reconcile": lambda: store.reconcile(ReconcileScope(sweep_from="")),
            }
            for name, call in attempts.items():
                try:
                    await call()
                except StoreError as exc:
                    failures.append(
                        f"{name}: {type(exc).__name__}" + (" unavailable" if "unavailable" in str(exc) else "")
                    )
            cluster.start()
            report = await store.verify()
            return failures, int(report.ok)
        finally:
            await store.close()

    failures, ok = asyncio.run(scenario())
    assert failures == [
        f"{name}: StoreUnavailable unavailable"
        for name in ("verify", "stats", "list_runs", "get_run", "tree_head", "rebuild", "reconcile")
    ]
    assert ok == 1


def test_a_store_iteration_cut_by_the_database_stopping_raises_store_error(cluster: Cluster, database: str) -> None:
    """iter_runs losing its connection after its first run raises StoreError, not the driver's exception."""
    with serve_process(["--db", database], _env()) as (url, _child):
        _post_runs(url, 3)

    async def scenario() -> str:
        store = PostgresStore(database, pool_max=2)
        await store.open()
        try:
            runs = store.iter_runs(RunQuery(), with_nodes=True)
            await anext(runs)
            cluster.stop()
            try:
                async for _run in runs:
                    pass
            except StoreError as exc:
                return type(exc).__name__
            finally:
                cluster.start()
            return "no error"
        finally:
            await store.close()

    assert asyncio.run(scenario()) == "StoreUnavailable"


def test_a_proof_read_a_chunk_at_a_time_cut_by_the_database_stopping_raises_store_error(
    cluster: Cluster, database: str
) -> None:
    """iter_run_proof losing the database after its first chunk raises StoreUnavailable (which the streamed proof
    route turns into a body cut short, as an export's), not the driver's exception."""
    run = RunEvents().start()
    for index in range(300):  # 602 entries: three chunks of a proof
        run.node(f"step-{index}")
    run.finish()
    with serve_process(["--db", database], _env()) as (url, _child):
        answer = httpx.post(f"{url}/v1/events", json={"events": run.events}, timeout=60)
        assert answer.json()["accepted"] == len(run.events), answer.text

    async def scenario() -> str:
        store = PostgresStore(database, pool_max=2)
        await store.open()
        try:
            size = (await store.tree_head()).size
            chunks = store.iter_run_proof(run.run_id, size)
            assert len(await anext(chunks)) == PROOF_CHUNK
            cluster.stop()
            try:
                async for _chunk in chunks:
                    pass
            except StoreError as exc:
                return type(exc).__name__
            finally:
                cluster.start()
            return "no error"
        finally:
            await store.close()

    assert asyncio.run(scenario()) == "StoreUnavailable"
