"""The body budget against a real receiver process: many concurrent large valid batches keep RSS bounded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from flowledger.receiver._budget import BodyBudget
from tests.receiver._support import Producer, RunEvents

CONCURRENT_BATCHES: Final = 16
BATCH_BYTES: Final = 5 * 1024 * 1024
RSS_BOUND_BYTES: Final = 600 * 1024 * 1024
"""Peak RSS the receiver stays under with the default budget (without it: about 1.1 GB for this load)."""
WAIT_S: Final = 300.0


def _batch(target_bytes: int) -> bytes:
    """A valid batch of whole runs, each node with a 3 KiB output, about ``target_bytes`` long."""
    producer = Producer()
    events: list[dict[str, Any]] = []
    size = 0
    while size < target_bytes:
        run = RunEvents(producer).start()
        for i in range(20):
            run.node(f"step_{i}", output={"text": "x" * 3000, "i": i})
        run.finish()
        events.extend(run.events)
        size += len(json.dumps(run.events))
    return json.dumps({"events": events}).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(db: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")} | env
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowledger", "serve", "--db", str(db), "--port", str(port), "--log-level", "warning"],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "the receiver exited"
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.05)


def _status_bytes(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc")


def _peak_rss_bytes(pid: int) -> int:
    return _status_bytes(pid, "VmHWM")


def _settled_rss_bytes(pid: int, peak: int) -> int:
    """The RSS once it fell below the peak (memory handed back after the burst), or as it is after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while (rss := _status_bytes(pid, "VmRSS")) >= peak and time.monotonic() < deadline:
        time.sleep(0.1)
    return rss


def post_concurrently(url: str, bodies: list[bytes]) -> tuple[int, int]:
    """Post every body at once, each retried after Retry-After on 503; return (accepted events, 503 answers)."""
    accepted = [0] * len(bodies)
    busy = [0] * len(bodies)
    start = threading.Barrier(len(bodies))

    def post(i: int) -> None:
        with httpx.Client(timeout=WAIT_S) as client:
            start.wait()
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                response = client.post(
                    f"{url}/v1/events", content=bodies[i], headers={"content-type": "application/json"}
                )
                if response.status_code == 503:
                    busy[i] += 1
                    time.sleep(float(response.headers["retry-after"]))
                    continue
                assert response.status_code == 200, response.text[:200]
                accepted[i] = response.json()["accepted"]
                return

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(accepted), sum(busy)


def measure(tmp_path: Path, env: dict[str, str]) -> tuple[int, int, int, int, int]:
    """Serve, post CONCURRENT_BATCHES batches of BATCH_BYTES at once; (peak RSS, RSS after, accepted, 503s, sent)."""
    bodies = [_batch(BATCH_BYTES) for _ in range(CONCURRENT_BATCHES)]
    sent = sum(len(json.loads(body)["events"]) for body in bodies)
    port = _free_port()
    proc = _serve(tmp_path / "f.db", port, env)
    try:
        accepted, busy = post_concurrently(f"http://127.0.0.1:{port}", bodies)
        peak = _peak_rss_bytes(proc.pid)
        after = _settled_rss_bytes(proc.pid, peak)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return peak, after, accepted, busy, sent


@pytest.mark.slow
def test_concurrent_large_batches_keep_rss_under_the_bound(tmp_path: Path) -> None:
    """16 concurrent valid 5 MiB batches: all stored (some after a 503), peak RSS under 600 MiB, then it falls."""
    peak, after, accepted, busy, sent = measure(tmp_path, {})
    assert accepted == sent
    assert busy > 0  # the budget turned some away for a moment
    assert peak < RSS_BOUND_BYTES, f"peak RSS {peak / 2**20:.0f} MiB"
    assert after < peak, "the receiver kept all the memory of the burst"


def test_the_budget_admits_what_fits_and_one_request_larger_than_all_of_it_alone() -> None:
    """Reservations add up to the capacity; a request bigger than the capacity goes through when alone."""
    budget = BodyBudget(100)
    assert budget.try_take(60) == 60
    assert budget.try_take(50) is None
    assert budget.try_take(40) == 40
    budget.give_back(60)
    budget.give_back(40)
    assert budget.try_take(500) == 100
    assert budget.try_take(1) is None
    budget.give_back(100)
    assert budget.in_flight_bytes == 0


if __name__ == "__main__":  # python -m tests.receiver.test_budget: peak RSS with and without the budget
    import tempfile

    for label, env in (("budget off", {"FLOWLEDGER_RECEIVER_MAX_BODY_BYTES_IN_FLIGHT": str(2**40)}), ("default", {})):
        with tempfile.TemporaryDirectory() as tmp:
            peak, after, accepted, busy, sent = measure(Path(tmp), env)
            print(
                f"{label}: peak RSS {peak / 2**20:.0f} MiB, {after / 2**20:.0f} MiB after, "
                f"{accepted}/{sent} events accepted, {busy} answers 503"
            )


def test_past_the_budget_ingest_and_otlp_get_503_with_retry_after_in_their_own_format(tmp_path: Path) -> None:
    """While one body holds the whole budget, /v1/events gets JSON 503 and /v1/traces an OTLP Status, both retryable."""
    from flowledger.receiver._config import ReceiverConfig
    from tests.receiver._support import simple_run, start_receiver

    live = start_receiver(ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0, max_body_bytes_in_flight=4096))
    body = json.dumps({"events": simple_run().events}).encode()
    host, port = live.url.removeprefix("http://").split(":")
    holder = socket.create_connection((host, int(port)), timeout=60)
    try:
        head = (
            "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        holder.sendall(head.encode() + body[:10])  # admitted, body still coming: its reservation is held
        deadline = time.monotonic() + WAIT_S
        while (answer := live.post(simple_run().events)).status_code != 503:
            assert time.monotonic() < deadline, "the held body never took the budget"
            time.sleep(0.05)
        assert answer.headers["retry-after"] == "1"
        assert "retry in 1 s" in answer.json()["error"]
        otlp = httpx.post(
            f"{live.url}/v1/traces",
            content=bytes(4000),  # refused before it is read: its size alone does not fit
            headers={"content-type": "application/x-protobuf"},
            timeout=WAIT_S,
        )
        assert otlp.status_code == 503
        assert otlp.headers["content-type"] == "application/x-protobuf"
        assert otlp.content.startswith(b"\x08\x0e\x12")  # google.rpc.Status code 14 UNAVAILABLE, then the message
        holder.sendall(body[10:])
        assert b"200 OK" in holder.recv(65536)
        assert live.post(simple_run().events).status_code == 200  # reservation returned
    finally:
        holder.close()
        live.stop()
