"""A generated five-node workflow (fetch, charge (an effect), price, pack, ship) run as a subprocess.

Each node function appends its name to ``calls.log``, so a test counts what really ran; ``price`` fails
while a ``fail_price`` file exists. Shared by the resume and diff tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.receiver._support import LiveReceiver

__all__ = ["Workflow"]

ROOT = Path(__file__).resolve().parents[1]

STEPS = textwrap.dedent(
    """
    import os
    from pathlib import Path

    HERE = Path(__file__).parent

    def _called(name):
        with open(HERE / "calls.log", "a") as fh:
            fh.write(name + "\\n")

    def fetch(order):
        _called("fetch")
        return {"order": order["id"], "lines": [{"sku": "apple", "qty": order["qty"]}]}

    def charge(fetched):
        _called("charge")
        return {"charged": True, "order": fetched["order"]}

    def price(charged, factor=2):
        _called("price")
        if (HERE / "fail_price").exists():
            raise RuntimeError("the price service is down")
        return {"total": 10 * factor, "order": charged["order"]}

    def pack(priced):
        _called("pack")
        return {"packed": priced["total"]}

    def ship(packed):
        _called("ship")
        return {"shipped": packed["packed"]}

    def audit(shipped):
        _called("audit")
        return {"audited": True}
    """
)

DEFINITION = """\
flowledger: 1
workflow:
  id: five-steps
{capture}trigger:
{trigger}
output: {output}
nodes:
  - id: fetch
    call: steps:fetch
  - id: charge
    call: steps:charge
    needs: [fetch]
    effect: true
  - id: price
    call: steps:price
    needs: [charge]
  - id: pack
    call: steps:pack
    needs: [price]
    with: {{size: {size}}}
  - id: ship
    call: steps:ship
    needs: [pack]
{extra}"""


def _steps_pack_takes_size(text: str) -> str:
    return text.replace("def pack(priced):", "def pack(priced, size=1):")


class Workflow:
    """A generated five-node workflow in a temp dir, run as a subprocess against a live receiver."""

    def __init__(self, folder: Path, live: LiveReceiver, *, full_capture: bool = True) -> None:
        self.folder = folder
        self.live = live
        self.full_capture = full_capture
        (folder / "steps.py").write_text(_steps_pack_takes_size(STEPS), encoding="utf-8")
        self.generate()

    def generate(self, *, size: int = 1, audit: bool = False, http: bool = False) -> None:
        extra = "  - id: audit\n    call: steps:audit\n    needs: [ship]\n" if audit else ""
        trigger = "  type: http\n  http: {path: /orders}" if http else "  type: manual"
        capture = "  capture: full\n" if self.full_capture else ""  # else the default capture
        text = DEFINITION.format(
            size=size, extra=extra, output="audit" if audit else "ship", trigger=trigger, capture=capture
        )
        (self.folder / "wf.yaml").write_text(text, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "flowledger", "generate", "wf.yaml", "-o", "wf.py"],
            cwd=self.folder,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
        return env | {
            "FLOWLEDGER_ENDPOINT": self.live.url,
            "FLOWLEDGER_SPOOL_DIR": str(self.folder / "spool"),
            "FLOWLEDGER_EXPORT_SPANS": "0",
            "FLOWLEDGER_EXIT_FLUSH_S": "10",
            "PYTHONPATH": os.pathsep.join([str(self.folder), str(ROOT / "src")]),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        (self.folder / "calls.log").write_text("", encoding="utf-8")
        return subprocess.run(
            [sys.executable, "wf.py", *args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=60,
        )

    def calls(self) -> list[str]:
        return (self.folder / "calls.log").read_text(encoding="utf-8").split()

    def latest_run(self) -> dict[str, object]:
        runs = self.live.get("/api/runs", params={"limit": 1}).json()["runs"]
        detail: dict[str, object] = self.live.get(f"/api/runs/{runs[0]['run_id']}").json()
        return detail

    def fail(self, on: bool) -> None:
        flag = self.folder / "fail_price"
        if on:
            flag.write_text("", encoding="utf-8")
        else:
            flag.unlink(missing_ok=True)

    def failed_run(self) -> str:
        """Run once with ``price`` failing; return the run id (fetch and charge succeeded)."""
        self.fail(True)
        done = self.run("--input", json.dumps({"id": "A-1", "qty": 3}))
        assert done.returncode == 1, done.stderr
        assert self.calls() == ["fetch", "charge", "price"]
        match = re.search(r"run ([0-9a-f-]{36}) failed at node `price`", done.stderr)
        assert match, done.stderr
        self.fail(False)
        return match.group(1)
