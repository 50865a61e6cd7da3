"""In real headless Chromium: the Resume button of an http-triggered run, the chain of attempts, the diff page."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowledger.receiver._config import ReceiverConfig
from tests._five_steps import Workflow
from tests.receiver._support import LiveReceiver, free_socket, start_receiver

pytestmark = pytest.mark.slow

_WAIT_MS = 20_000


def _wait_for(check: Any, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


@pytest.fixture
def app_port() -> int:
    """A free port for the workflow's app (taken before the receiver starts, which must know it)."""
    with free_socket() as sock:
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def resumable(tmp_path: Path, app_port: int) -> Iterator[LiveReceiver]:
    """A receiver whose Resume button forwards five-steps resumes to the app on ``app_port``."""
    config = ReceiverConfig(
        db_path=tmp_path / "flowledger.db",
        sweep_interval_s=0,
        resume_endpoints={"five-steps": f"http://127.0.0.1:{app_port}"},
    )
    receiver = start_receiver(config)
    yield receiver
    receiver.stop()


@contextlib.contextmanager
def _serving(folder: Path, receiver: LiveReceiver, port: int, **env: str) -> Iterator[tuple[Workflow, str]]:
    """The five-steps workflow with an http trigger, served by its own module (``--serve``) in a subprocess, with
    ``env`` added to its environment."""
    folder.mkdir()
    wf = Workflow(folder, receiver)
    wf.generate(http=True)
    (folder / "calls.log").write_text("", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "wf.py", "--serve", "--port", str(port)],
        cwd=folder,
        env=wf.env() | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert _wait_for(lambda: httpx.post(f"{url}/_flowledger/resume", json={}, timeout=2).status_code == 400)
        yield wf, url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def served(tmp_path: Path, resumable: LiveReceiver, app_port: int) -> Iterator[tuple[Workflow, str]]:
    """The five-steps workflow with an http trigger, served by its own module (``--serve``) in a subprocess."""
    with _serving(tmp_path / "work", resumable, app_port) as served:
        yield served


def test_resume_button_resumes_an_http_run_and_the_diff_page_compares_them(
    served: tuple[Workflow, str], page: Any
) -> None:
    """Resume from the run page: only price, pack and ship run; the chain links to a diff naming price first."""
    wf, url = served
    wf.fail(True)
    answer = httpx.post(f"{url}/orders", json={"id": "A-1", "qty": 3}, timeout=30)
    assert answer.status_code == 500
    failed = answer.json()["run_id"]
    wf.fail(False)
    assert _wait_for(lambda: wf.live.get(f"/api/runs/{failed}").json().get("status") == "failed")
    assert wf.calls() == ["fetch", "charge", "price"]
    (wf.folder / "calls.log").write_text("", encoding="utf-8")

    page.goto(f"{wf.live.url}/#/runs/{failed}")
    page.click("#resume-button", timeout=_WAIT_MS)
    page.wait_for_selector("#resumed-run", timeout=_WAIT_MS)
    assert "(succeeded)" in page.text_content("#resume-status")
    assert wf.calls() == ["price", "pack", "ship"]

    page.click("#resumed-run")
    page.wait_for_selector("#chain li:nth-child(2)", timeout=_WAIT_MS)
    chain = page.eval_on_selector_all("#chain li", "items => items.map(i => i.dataset.run)")
    resumed = chain[1]
    assert chain[0] == failed
    assert wf.live.get(f"/api/runs/{resumed}").json()["resumed_from"] == failed
    assert page.query_selector("#resume-button") is None  # a succeeded run has nothing to resume

    page.click("#chain .compare-link")
    page.wait_for_selector("#diff-nodes", timeout=_WAIT_MS)
    assert page.text_content("#first-divergence") == "First divergence: price (status changed)"
    verdicts = page.eval_on_selector_all(
        "#diff-nodes tr[data-node]", "rows => rows.map(r => [r.dataset.node, r.querySelector('.verdict').textContent])"
    )
    assert verdicts[:3] == [["fetch", "same"], ["charge", "same"], ["price", "status changed"]]


def test_resume_without_a_configured_app_says_what_to_set(resumable: LiveReceiver, page: Any) -> None:
    """A failed http run of a workflow with no resume endpoint: the button answers with the variable to set."""
    from tests.receiver._support import RunEvents

    run = RunEvents(workflow_id="other-flow").start().node("fetch", status="failed").finish("failed")
    for event in run.events:
        if event["kind"] == "run_started":
            event["data"]["trigger_type"] = "http"
    assert resumable.post(run.events).json()["accepted"] == len(run.events)
    page.goto(f"{resumable.url}/#/runs/{run.run_id}")
    page.click("#resume-button", timeout=_WAIT_MS)
    page.wait_for_function(
        "() => document.querySelector('#resume-status').textContent.includes('FLOWLEDGER_RESUME_ENDPOINTS')",
        timeout=_WAIT_MS,
    )
    # The browser logs the refused POST; that 409 is the answer this test expects.
    page.problems[:] = [p for p in page.problems if "status of 409" not in p]
    answer = httpx.post(f"{resumable.url}/api/runs/{run.run_id}/resume", timeout=30)
    assert answer.status_code == 409
    assert json.loads(answer.text)["error"].startswith("no app is configured to resume workflow 'other-flow'")


@pytest.fixture
def served_in_a_project(tmp_path: Path, resumable: LiveReceiver, app_port: int) -> Iterator[tuple[Workflow, str]]:
    """:func:`served`, its runs in project ``shop`` (FLOWLEDGER_PROJECT)."""
    with _serving(tmp_path / "work", resumable, app_port, FLOWLEDGER_PROJECT="shop") as served:
        yield served


def test_resume_of_an_id_two_projects_use_reads_the_named_projects_run(
    served_in_a_project: tuple[Workflow, str],
) -> None:
    """Keys off, the failed run's id also used in another project: POST /api/runs/{id}/resume?project=shop
    forwards the run's project, so the app reads that run back (not a 409) and resumes it."""
    from tests.receiver._support import RunEvents

    wf, url = served_in_a_project
    wf.fail(True)
    answer = httpx.post(f"{url}/orders", json={"id": "A-1", "qty": 3}, timeout=30)
    assert answer.status_code == 500
    failed = answer.json()["run_id"]
    wf.fail(False)
    scope = {"project": "shop"}
    assert _wait_for(lambda: wf.live.get(f"/api/runs/{failed}", params=scope).json().get("status") == "failed")
    squat = RunEvents(project="other")
    squat.run_id = failed
    assert wf.live.post(squat.start().events).json()["rejected"] == []
    (wf.folder / "calls.log").write_text("", encoding="utf-8")
    resumed = httpx.post(f"{wf.live.url}/api/runs/{failed}/resume", params=scope, timeout=60)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "succeeded"
    assert wf.calls() == ["price", "pack", "ship"]
    run = wf.live.get(f"/api/runs/{resumed.json()['run_id']}").json()
    assert (run["resumed_from"], run["project"]) == (failed, "shop")
