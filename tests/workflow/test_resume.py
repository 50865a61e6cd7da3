"""Resuming a failed run from a generated module, against a real receiver and its SQLite ledger."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, start_receiver

ROOT = Path(__file__).resolve().parents[2]

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
  capture: full
trigger:
  type: manual
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

    def __init__(self, folder: Path, live: LiveReceiver) -> None:
        self.folder = folder
        self.live = live
        (folder / "steps.py").write_text(_steps_pack_takes_size(STEPS), encoding="utf-8")
        self.generate()

    def generate(self, *, size: int = 1, audit: bool = False) -> None:
        extra = "  - id: audit\n    call: steps:audit\n    needs: [ship]\n" if audit else ""
        text = DEFINITION.format(size=size, extra=extra, output="audit" if audit else "ship")
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


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver with a real SQLite ledger on 127.0.0.1."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db"))
    yield receiver
    receiver.stop()


@pytest.fixture
def wf(tmp_path: Path, live: LiveReceiver) -> Workflow:
    """The five-node workflow, generated."""
    folder = tmp_path / "work"
    folder.mkdir()
    return Workflow(folder, live)


def _failed_run(wf: Workflow) -> str:
    wf.fail(True)
    done = wf.run("--input", json.dumps({"id": "A-1", "qty": 3}))
    assert done.returncode == 1, done.stderr
    assert wf.calls() == ["fetch", "charge", "price"]
    match = re.search(r"run ([0-9a-f-]{36}) failed at node `price`", done.stderr)
    assert match, done.stderr
    wf.fail(False)
    return match.group(1)


def _node_outcomes(run: dict[str, object]) -> dict[str, str]:
    nodes = run["nodes"]
    assert isinstance(nodes, list)
    return {n["node_id"]: n["status"] for n in nodes}


@pytest.mark.slow
def test_a_run_failed_at_its_third_node_resumes_to_success_reusing_the_first_two(wf: Workflow) -> None:
    """The resume runs price, pack and ship only; fetch is reused and the effect charge is not repeated."""
    failed = _failed_run(wf)
    done = wf.run("--resume", failed)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"shipped": 20}
    assert wf.calls() == ["price", "pack", "ship"]
    assert "reuse fetch" in done.stderr and "run   price: it failed" in done.stderr
    resumed = wf.latest_run()
    assert resumed["resumed_from"] == failed
    assert resumed["status"] == "succeeded"
    assert _node_outcomes(resumed) == dict.fromkeys(["fetch", "charge", "price", "pack", "ship"], "succeeded")

    # Resumed again, from pack: everything above it is reused, the chain of attempts grows.
    again = wf.run("--resume", str(resumed["run_id"]), "--from", "pack")
    assert again.returncode == 0, again.stderr
    assert wf.calls() == ["pack", "ship"]
    assert wf.latest_run()["resumed_from"] == resumed["run_id"]

    # From charge: the effect runs again on the same input, so its recorded outcome stands in for it.
    effect = wf.run("--resume", failed, "--from", "charge")
    assert effect.returncode == 0, effect.stderr
    assert wf.calls() == ["price", "pack", "ship"]
    charge = [n for n in wf.latest_run()["nodes"] if n["node_id"] == "charge"]  # type: ignore[attr-defined]
    assert charge[0]["duplicate"] is True
    repeated = wf.run("--resume", failed, "--from", "charge", "--repeat-effects")
    assert repeated.returncode == 0, repeated.stderr
    assert wf.calls() == ["charge", "price", "pack", "ship"]


@pytest.mark.slow
def test_a_tampered_recorded_output_refuses_the_resume(wf: Workflow) -> None:
    """A changed blob, then a changed ledger payload, each refuse the resume naming the node; nothing runs."""
    failed = _failed_run(wf)
    db = sqlite3.connect(wf.live.db_path)
    try:
        (digest,) = db.execute(
            "SELECT output_sha256 FROM node_runs WHERE run_id = ? AND node_id = 'fetch'", (failed,)
        ).fetchone()
        original = db.execute("SELECT body FROM blobs WHERE sha256 = ?", (digest,)).fetchone()[0]
        with db:
            db.execute("UPDATE blobs SET body = ? WHERE sha256 = ?", (original.replace("A-1", "B-2"), digest))
        done = wf.run("--resume", failed)
        assert done.returncode == 1
        assert "node `fetch`" in done.stderr and "blob was changed" in done.stderr, done.stderr
        assert wf.calls() == []

        with db:
            db.execute("UPDATE blobs SET body = ? WHERE sha256 = ?", (original, digest))
            (seq,) = db.execute(
                "SELECT output_seq FROM node_runs WHERE run_id = ? AND node_id = 'charge'", (failed,)
            ).fetchone()
            db.execute("DROP TRIGGER IF EXISTS payloads_no_update")
            body = db.execute("SELECT body FROM payloads WHERE seq = ?", (seq,)).fetchone()[0]
            db.execute("UPDATE payloads SET body = ? WHERE seq = ?", (body.replace("A-1", "B-2"), seq))
    finally:
        db.close()
    done = wf.run("--resume", failed)
    assert done.returncode == 1
    assert "node `charge`" in done.stderr and "does not match the hash its entry commits to" in done.stderr
    assert wf.calls() == []


@pytest.mark.slow
def test_a_changed_definition_reruns_only_the_changed_nodes_and_records_both_hashes(wf: Workflow) -> None:
    """With pack's arguments changed, fetch..price are reused and pack, ship run; both definition hashes are kept."""
    wf.fail(False)
    first = wf.run("--input", json.dumps({"id": "A-1", "qty": 3}))
    assert first.returncode == 0, first.stderr
    original = wf.latest_run()
    wf.generate(size=2)
    done = wf.run("--resume", str(original["run_id"]))
    assert done.returncode == 0, done.stderr
    assert wf.calls() == ["pack", "ship"]
    assert "run   pack: its definition changed" in done.stderr
    resumed = wf.latest_run()
    assert resumed["resumed_from_definition_sha256"] == original["definition_sha256"]
    assert resumed["definition_sha256"] not in (None, original["definition_sha256"])


@pytest.mark.slow
def test_a_from_node_that_does_not_exist_is_refused(wf: Workflow) -> None:
    """--from names a node of the workflow; anything else is one clear line and exit 1, before any node runs."""
    failed = _failed_run(wf)
    done = wf.run("--resume", failed, "--from", "nope")
    assert done.returncode == 1
    assert "--from nope: the workflow has no such node" in done.stderr
    assert wf.calls() == []
