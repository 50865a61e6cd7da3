"""Resuming a failed run from a generated module, against a real receiver and its SQLite ledger."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests._five_steps import Workflow
from tests.receiver._support import LiveReceiver, RunEvents


def _resumed_after_failing_at_price(wf: Workflow) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Fail a run at its third node (price), resume it: it succeeds running price, pack and ship, fetch reused."""
    failed = wf.failed_run()
    done = wf.run("--resume", failed)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"shipped": 20}
    assert wf.calls() == ["price", "pack", "ship"]
    assert "reuse fetch" in done.stderr
    return failed, done


def _node_outcomes(run: dict[str, object]) -> dict[str, str]:
    nodes = run["nodes"]
    assert isinstance(nodes, list)
    return {n["node_id"]: n["status"] for n in nodes}


@pytest.mark.slow
def test_a_run_failed_at_its_third_node_resumes_to_success_reusing_the_first_two(wf: Workflow) -> None:
    """The resume runs price, pack and ship only; fetch is reused and the effect charge is not repeated."""
    failed, done = _resumed_after_failing_at_price(wf)
    assert "run   price: it failed" in done.stderr
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
def test_outputs_the_default_capture_recorded_whole_are_reused(tmp_path: Path, live: LiveReceiver) -> None:
    """Without `capture: full`, small outputs are in their events whole: the resume reuses fetch and charge from
    them (the effect not repeated) and runs the rest; the trigger data comes back the same way."""
    folder = tmp_path / "default"
    folder.mkdir()
    wf = Workflow(folder, live, full_capture=False)
    failed, done = _resumed_after_failing_at_price(wf)
    assert "reuse charge" in done.stderr
    assert wf.latest_run()["resumed_from"] == failed
    from_fetch = wf.run("--resume", failed, "--from", "fetch")  # fetch runs again on the recorded trigger data
    assert from_fetch.returncode == 0, from_fetch.stderr
    assert wf.calls() == ["fetch", "price", "pack", "ship"]  # charge: the same input, its recorded outcome stands


@pytest.mark.slow
def test_a_tampered_recorded_output_refuses_the_resume(wf: Workflow) -> None:
    """A changed blob, then a changed ledger payload, each refuse the resume naming the node; nothing runs."""
    failed = wf.failed_run()
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
        assert "node `fetch`" in done.stderr, done.stderr
        assert "blob was changed" in done.stderr
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
    assert "node `charge`" in done.stderr
    assert "does not match the hash its entry commits to" in done.stderr
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
    """--from names a node of the workflow; anything else is a usage error (exit 2), one line listing the nodes."""
    failed = wf.failed_run()
    done = wf.run("--resume", failed, "--from", "nope")
    assert done.returncode == 2
    assert done.stderr == (
        "error: --from nope: the workflow has no such node (its nodes: fetch, charge, price, pack, ship)\n"
    )
    assert wf.calls() == []


@pytest.mark.slow
def test_flowledger_resume_imports_the_generated_module_and_resumes(wf: Workflow) -> None:
    """`flowledger resume RUN_ID --module wf.py` does what `python wf.py --resume RUN_ID` does."""
    failed = wf.failed_run()
    (wf.folder / "calls.log").write_text("", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "flowledger", "resume", failed, "--module", "wf.py", "--url", wf.live.url],
        cwd=wf.folder,
        capture_output=True,
        text=True,
        env=wf.env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert wf.calls() == ["price", "pack", "ship"]
    assert wf.latest_run()["resumed_from"] == failed
    (wf.folder / "steps_only.py").write_text("X = 1\n", encoding="utf-8")
    refused = subprocess.run(
        [sys.executable, "-m", "flowledger", "resume", failed, "--module", "steps_only.py"],
        cwd=wf.folder,
        capture_output=True,
        text=True,
        env=wf.env(),
        timeout=60,
    )
    assert refused.returncode == 2
    assert "not a module made by `flowledger generate`" in refused.stderr


@pytest.mark.slow
def test_flowledger_resume_project_names_the_run_of_an_id_two_projects_use(
    wf: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys off, the failed run's id also used in another project: `flowledger resume` without --project stops with
    the receiver's reason and runs nothing; with --project it resumes that project's run."""
    recorded = wf.env
    monkeypatch.setattr(wf, "env", lambda: recorded() | {"FLOWLEDGER_PROJECT": "shop"})
    failed = wf.failed_run()
    squat = RunEvents(project="other")
    squat.run_id = failed
    assert wf.live.post(squat.start().events).json()["rejected"] == []
    command = [sys.executable, "-m", "flowledger", "resume", failed, "--module", "wf.py", "--url", wf.live.url]
    (wf.folder / "calls.log").write_text("", encoding="utf-8")
    refused = subprocess.run(command, cwd=wf.folder, capture_output=True, text=True, env=wf.env(), timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert "answered 409" in refused.stderr
    assert "more than one project" in refused.stderr
    assert wf.calls() == []
    done = subprocess.run(
        [*command, "--project", "shop"], cwd=wf.folder, capture_output=True, text=True, env=wf.env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert wf.calls() == ["price", "pack", "ship"]
    resumed = wf.latest_run()
    assert (resumed["resumed_from"], resumed["project"], resumed["status"]) == (failed, "shop", "succeeded")
    # An app that records to another project resumes shop's run into shop: a run and its resume share a project.
    monkeypatch.setattr(wf, "env", lambda: recorded() | {"FLOWLEDGER_PROJECT": "elsewhere"})
    again = subprocess.run(
        [*command, "--project", "shop"], cwd=wf.folder, capture_output=True, text=True, env=wf.env(), timeout=60
    )
    assert again.returncode == 0, again.stderr
    second = wf.latest_run()
    assert second["run_id"] != resumed["run_id"]
    assert (second["resumed_from"], second["project"]) == (failed, "shop")


@pytest.mark.slow
def test_a_run_without_a_project_is_resumed_without_one(wf: Workflow, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed run without a project, resumed by an app that records to a project: the resumed run has no project
    either, so the chain of attempts holds both."""
    failed = wf.failed_run()
    assert wf.latest_run()["project"] is None
    recorded = wf.env
    monkeypatch.setattr(wf, "env", lambda: recorded() | {"FLOWLEDGER_PROJECT": "elsewhere"})
    command = [sys.executable, "-m", "flowledger", "resume", failed, "--module", "wf.py", "--url", wf.live.url]
    done = subprocess.run(command, cwd=wf.folder, capture_output=True, text=True, env=wf.env(), timeout=60)
    assert done.returncode == 0, done.stderr
    resumed = wf.latest_run()
    assert (resumed["resumed_from"], resumed["project"]) == (failed, None)
    chain = wf.live.get(f"/api/runs/{failed}/chain").json()["runs"]
    assert [run["run_id"] for run in chain] == [failed, resumed["run_id"]]
