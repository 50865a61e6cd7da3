"""A throwaway Redis server and real Celery worker processes for the executor tests and the benchmark."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

ROOT: Final = Path(__file__).resolve().parents[3]
START_TIMEOUT_S: Final = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str | None:
    """Debian's redis-server, if installed."""
    return shutil.which("redis-server")


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A redis-server on a free 127.0.0.1 port, no persistence; yields its URL."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def worker_env(url: str, queue: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["FLOWLEDGER_CELERY_URL"] = url
    env["FLOWLEDGER_CELERY_QUEUE"] = queue
    env.update(extra)
    return env


@dataclass
class Cluster:
    """Celery worker processes consuming one queue."""

    url: str
    queue: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[BinaryIO] = field(default_factory=list)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)
        for out in self.logs:
            out.close()


@contextmanager
def celery_workers(
    url: str,
    *,
    count: int,
    concurrency: int,
    log: Path,
    include: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """``count`` worker processes (each with ``concurrency`` pool processes), ready when yielded."""
    from celery import Celery

    queue = f"flowledger-test-{os.getpid()}-{time.monotonic_ns()}"
    cluster = Cluster(url, queue)
    try:
        for number in range(count):
            out = (log / f"worker-{number}.log").open("wb")
            cluster.logs.append(out)
            cluster.workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "flowledger.workflow.executors.celery_worker",
                        "worker",
                        "-Q",
                        queue,
                        "-c",
                        str(concurrency),
                        "-P",
                        "prefork",
                        "-n",
                        f"w{number}-{queue}@%h",
                        "--without-gossip",
                        "--without-mingle",
                        "-l",
                        "warning",
                        *(["--include", ",".join(include)] if include else []),
                    ],
                    cwd=ROOT,
                    env=worker_env(url, queue, **(env or {})),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        control = Celery(broker=url, set_as_current=False)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            replies = control.control.ping(timeout=0.5) or []
            names = {name for reply in replies for name in reply if queue in name}
            if len(names) >= count:
                break
            if time.monotonic() > deadline or any(w.poll() is not None for w in cluster.workers):
                raise RuntimeError(f"the Celery workers did not start; see {log}")
        control.close()
        yield cluster
    finally:
        cluster.stop()
