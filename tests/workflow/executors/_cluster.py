"""Real Celery worker processes for the executor tests and the benchmark (Redis: ``tests/_redis.py``)."""

from __future__ import annotations

import os
import signal
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
