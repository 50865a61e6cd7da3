"""Log lines of node attempts, from a real program through a real receiver to the API, the CLI and the export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.receiver._support import LiveReceiver

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent(
    """
    import logging, sys, threading
    import httpx
    import flowledger
    from flowledger.instrument import ContextThreadPoolExecutor

    app_lines = open(sys.argv[2], "w")
    logging.basicConfig(level=logging.INFO, stream=app_lines, format="%(name)s %(message)s")
    log = logging.getLogger("shop.steps")

    @flowledger.node
    def fetch(order):
        log.info("fetching order %s with password=hunter2", order)
        httpx.get(sys.argv[1] + "/healthz")          # a library that logs through logging
        with ContextThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda i: log.warning("worker %d", i), range(2)))
        for _ in range(100_000):
            log.info("polling")
        return order

    @flowledger.node
    def price(order):
        log.error("price %s failed", order)
        raise ValueError("no price")

    log.info("outside every node")
    try:
        with flowledger.run("shop", data={"order": 7}):
            price(fetch(7))
    except ValueError:
        pass
    print("flushed" if flowledger.flush(timeout_s=10.0) else "not flushed")
    """
)


def _run_program(live: LiveReceiver, tmp_path: Path) -> Path:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    app_log = tmp_path / "app.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    env |= {
        "FLOWLEDGER_ENDPOINT": live.url,
        "FLOWLEDGER_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script), live.url, str(app_log)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "flushed"
    return app_log


def test_logs_reach_the_api_cli_and_export_on_the_right_attempt(live: LiveReceiver, tmp_path: Path) -> None:
    """A node's lines, its thread's and a library's land on its attempt, redacted, the storm as one line."""
    app_log = _run_program(live, tmp_path)
    app_lines = app_log.read_text().splitlines()
    # The application's own handler got every line, the storm's 100,000 included, unredacted.
    assert sum(line == "shop.steps polling" for line in app_lines) == 100_000
    assert "shop.steps fetching order 7 with password=hunter2" in app_lines
    assert "shop.steps outside every node" in app_lines

    (run,) = live.get("/api/runs").json()["runs"]
    detail = live.get(f"/api/runs/{run['run_id']}").json()
    fetch, price = detail["nodes"]
    messages = [line["message"] for line in fetch["logs"]]
    assert messages[0] == "fetching order 7 with password=[REDACTED]"
    assert any(
        m.startswith("HTTP Request: GET ") and line["logger"] == "httpx"
        for m, line in zip(messages, fetch["logs"], strict=True)
    )
    assert sorted(m for m in messages if m.startswith("worker")) == ["worker 0", "worker 1"]
    storm = [line for line in fetch["logs"] if line["message"] == "polling"]
    assert len(storm) == 1
    assert storm[0]["repeats"] == 100_000
    assert "outside every node" not in json.dumps(detail)
    assert [(line["level"], line["message"]) for line in price["logs"]] == [("ERROR", "price 7 failed")]
    assert fetch["logs"][0]["span_id"] == fetch["span_id"]
    assert fetch["logs"][0]["trace_id"] == detail["trace_id"]

    errors = live.get(f"/api/runs/{run['run_id']}/attempts/{fetch['span_id']}/logs", params={"level": "warning"})
    assert sorted(line["message"] for line in errors.json()["logs"]) == ["worker 0", "worker 1"]
    assert (
        live.get(f"/api/runs/{run['run_id']}/attempts/{fetch['span_id']}/logs", params={"level": "loud"}).status_code
        == 400
    )
    assert live.get(f"/api/runs/{run['run_id']}/attempts/not-a-span/logs").status_code == 400

    cli = [sys.executable, "-m", "flowledger"]
    shown = subprocess.run(
        [*cli, "show", run["run_id"], "--logs", "--url", live.url], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "logs of fetch attempt 1" in shown.stdout
    assert "polling (x100000)" in shown.stdout
    assert "ERROR    shop.steps: price 7 failed" in shown.stdout
    assert "hunter2" not in shown.stdout

    exported = subprocess.run(
        [*cli, "export", "--format", "jsonl", "--url", live.url], capture_output=True, text=True, timeout=60
    )
    assert exported.returncode == 0, exported.stderr
    (line,) = exported.stdout.splitlines()
    nodes = json.loads(line)["nodes"]
    assert [entry["message"] for entry in nodes[1]["logs"]] == ["price 7 failed"]
