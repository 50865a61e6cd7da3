"""The SDK posting a real workflow to a real receiver, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.receiver._support import LiveReceiver

ROOT = Path(__file__).resolve().parents[2]

WORKFLOW = textwrap.dedent(
    """
    import flowledger

    @flowledger.node
    def fetch(order):
        return {"order": order, "items": [1, 2]}

    @flowledger.node(id="price")
    def price(basket):
        flowledger.cost(tokens=1200, tool_calls=2, external_requests=1, usd=0.004)
        return 12.5

    @flowledger.node
    def explode(value):
        raise ValueError("no stock for " + str(value))

    with flowledger.run("order-intake", name="Order intake", trigger="manual",
                        data={"order": 7, "api_key": "s3cret"}):
        price(fetch(7))

    try:
        with flowledger.run("order-intake", name="Order intake", data={"order": 8}):
            explode(fetch(8))
    except ValueError:
        pass

    print("flushed" if flowledger.flush(timeout_s=10.0) else "not flushed")
    """
)


def test_sdk_workflow_lands_in_the_receiver(live: LiveReceiver, tmp_path: Path) -> None:
    """Runs made with flowledger.run and @flowledger.node show up with nodes, errors, cost and redaction."""
    script = tmp_path / "workflow.py"
    script.write_text(WORKFLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    env |= {
        "FLOWLEDGER_ENDPOINT": live.url,
        "FLOWLEDGER_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    }
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "flushed"

    runs = live.get("/api/runs").json()
    assert runs["total"] == 2
    by_status = {r["status"]: r for r in runs["runs"]}
    ok, failed = by_status["succeeded"], by_status["failed"]
    assert ok["workflow_id"] == "order-intake"
    assert ok["workflow_name"] == "Order intake"
    assert ok["trigger_type"] == "manual"
    assert ok["cost"]["tokens"] == 1200
    assert failed["error"]["type"] == "ValueError"

    detail = live.get(f"/api/runs/{ok['run_id']}").json()
    assert detail["input"] == {"order": 7, "api_key": "[REDACTED]"}
    assert [(n["node_id"], n["status"]) for n in detail["nodes"]] == [("fetch", "succeeded"), ("price", "succeeded")]
    assert detail["nodes"][1]["input"] == {"order": 7, "items": [1, 2]}
    assert detail["nodes"][1]["output"] == 12.5

    broken = live.get(f"/api/runs/{failed['run_id']}").json()
    assert [(n["node_id"], n["status"]) for n in broken["nodes"]] == [("fetch", "succeeded"), ("explode", "failed")]
    assert "no stock for" in broken["nodes"][1]["error"]["message"]
    assert live.get("/api/verify").json()["ok"] is True
