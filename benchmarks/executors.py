"""The celery executor against the local executor and against Celery used bare, in one run.

Starts a throwaway Redis, a receiver (``flowledger serve``, another
process) and two Celery workers of two pool processes each, then measures:

- per node: one run of a one-node workflow (an identity function), run
  after run, on the local executor and on the celery executor, and one
  bare Celery task (the same function, no flowledger) sent and awaited;
- fan-out: one run of a workflow whose node is mapped over 1,000 items
  (all at once), on both executors, and a bare Celery ``group`` of 1,000
  tasks.

Every run's records go to the receiver (from the workers, for the celery
executor). Prints medians; ``--runs`` and ``--fanout`` change the sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests._redis import free_port, redis_server  # noqa: E402
from tests.workflow.executors._cluster import celery_workers  # noqa: E402
from tests.workflow.executors.bare_tasks import BARE_TASK  # noqa: E402

import flowledger  # noqa: E402
from flowledger.workflow import Call, Map, Node, Workflow, execute_run  # noqa: E402
from flowledger.workflow.executors import Executor, executor_named  # noqa: E402
from flowledger.workflow.executors._celery import CeleryExecutor  # noqa: E402

NODES = "tests.workflow.executors.remote_nodes"
BARE_MODULE = "tests.workflow.executors.bare_tasks"


def start_receiver(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flowledger.cli", "serve", "--db", str(directory / "bench.db"), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the receiver did not start")


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run_workflow(workflow: Workflow, payload: Any, executor: Executor) -> None:
    result = asyncio.run(execute_run(workflow, payload, executor=executor))
    if result.status.value != "succeeded":
        raise RuntimeError(f"run failed: {result.error!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="runs of the one-node workflow per executor")
    parser.add_argument("--fanout", type=int, default=1000, help="items of the fan-out")
    parser.add_argument("--rounds", type=int, default=3, help="fan-out rounds per case (median)")
    args = parser.parse_args()

    single = Workflow(id="bench-node", nodes=(Node(id="one", call=Call(NODES, "identity")),), output="one")
    fanout = Workflow(
        id="bench-fanout",
        nodes=(Node(id="each", call=Call(NODES, "identity"), map=Map(max_concurrency=args.fanout)),),
        output="each",
    )
    items = list(range(args.fanout))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        receiver, url = start_receiver(tmp)
        env = {"FLOWLEDGER_ENDPOINT": url, "FLOWLEDGER_SPOOL_DIR": str(tmp / "spool-workers")}
        try:
            with (
                redis_server(tmp) as redis_url,
                celery_workers(
                    redis_url,
                    count=2,
                    concurrency=2,
                    log=tmp,
                    include=("tests.workflow.executors.bare_tasks",),
                    env=env,
                ) as cluster,
            ):
                flowledger.configure(endpoint=url, spool_dir=tmp / "spool")
                local = executor_named("local")
                celery = CeleryExecutor(redis_url, queue=cluster.queue)
                bare_app = celery.app

                def bare_one() -> None:
                    bare_app.send_task(BARE_TASK, args=[1]).get(timeout=30)

                def bare_group() -> None:
                    from celery import group

                    signature = bare_app.signature(BARE_TASK)
                    group(signature.clone(args=(i,)) for i in items).apply_async().get(timeout=300)

                for warm in range(5):  # connections, imports, pool processes
                    run_workflow(single, warm, celery)
                    run_workflow(single, warm, local)
                    bare_one()
                per_node: dict[str, list[float]] = {"local": [], "celery": [], "bare": []}
                for i in range(args.runs):  # cases alternate run by run
                    per_node["local"].append(timed(functools.partial(run_workflow, single, i, local)))
                    per_node["celery"].append(timed(functools.partial(run_workflow, single, i, celery)))
                    per_node["bare"].append(timed(bare_one))
                fan: dict[str, list[float]] = {"local": [], "celery": [], "bare": []}
                for _ in range(args.rounds):
                    fan["local"].append(timed(lambda: run_workflow(fanout, items, local)))
                    fan["celery"].append(timed(lambda: run_workflow(fanout, items, celery)))
                    fan["bare"].append(timed(bare_group))
                flowledger.flush(10.0)
        finally:
            receiver.terminate()
            receiver.wait(10)

    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    print(f"per node: one-node workflow, median of {args.runs} runs (2 workers x 2 pool processes, Redis)")
    print(f"  local executor              {ms(per_node['local']):8.2f} ms per run")
    print(f"  celery executor             {ms(per_node['celery']):8.2f} ms per run")
    print(f"  celery bare (send + get)    {ms(per_node['bare']):8.2f} ms per task")
    extra = ms(per_node["celery"]) - ms(per_node["bare"])
    print(f"  celery executor over bare   {extra:8.2f} ms per node")
    print(f"fan-out: {args.fanout} items at once, median of {args.rounds} rounds")
    for name, label in (("local", "local executor"), ("celery", "celery executor"), ("bare", "celery bare group")):
        median_s = statistics.median(fan[name])
        print(f"  {label:<27} {median_s:8.2f} s  ({args.fanout / median_s:8.0f} nodes/s)")


if __name__ == "__main__":
    main()
