"""A generated module's edges: deep payloads reach the receiver, backoff never overflows, input that is not JSON is
refused, big integers print one way, and a mapped effect does each of its items once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

import flowledger
from flowledger._exceptions import WorkflowFailed
from flowledger.codegen import generate
from flowledger.instrument import _pipeline
from flowledger.testing import CapturedEvents, capture_events
from flowledger.workflow import Retry, main
from tests.receiver._support import LiveReceiver
from tests.workflow import nodes

Build = Callable[..., ModuleType]

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(flowledger.__file__).resolve().parents[1]
"""The flowledger a child process imports: the one this test imports."""
BIG = 2**70
BIG_MARKER = {"__flowledger__": "int", "value": str(BIG), "digits": 22}


def _child_env(endpoint: str, spool: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    return env | {
        "FLOWLEDGER_ENDPOINT": endpoint,
        "FLOWLEDGER_SPOOL_DIR": str(spool),
        "FLOWLEDGER_EXPORT_SPANS": "0",
        "FLOWLEDGER_EXIT_FLUSH_S": "30",
        "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT)]),
    }


def test_a_run_on_a_payload_nested_past_the_limit_is_recorded_whole(live: LiveReceiver, tmp_path: Path) -> None:
    """Trigger data 63 deep, passed on and joined into a mapping input: the receiver rejects no event, and the run and
    each of its attempts are stored (none vanished, the run did not stay running)."""
    (tmp_path / "wf.yaml").write_text(
        textwrap.dedent(
            """
            flowledger: 1
            workflow: {id: deep-payload}
            nodes:
              - {id: a, call: "tests.workflow.nodes:echo"}
              - {id: b, call: "tests.workflow.nodes:echo", needs: [a]}
              - {id: c, call: "tests.workflow.nodes:echo", needs: [a, b]}
            """
        ),
        encoding="utf-8",
    )
    (tmp_path / "wf.py").write_text(generate(tmp_path / "wf.yaml", relative_to=tmp_path), encoding="utf-8")
    (tmp_path / "deep.json").write_text("[" * 63 + "]" * 63, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "wf.py", "--input", "@deep.json"],
        cwd=tmp_path,
        env=_child_env(live.url, tmp_path / "spool"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "rejected" not in done.stderr
    runs = live.get("/api/runs").json()["runs"]
    assert [(r["workflow_id"], r["status"]) for r in runs] == [("deep-payload", "succeeded")]
    detail = live.get(f"/api/runs/{runs[0]['run_id']}").json()
    assert sorted((n["node_id"], n["status"]) for n in detail["nodes"]) == [
        ("a", "succeeded"),
        ("b", "succeeded"),
        ("c", "succeeded"),
    ]


def test_backoff_past_a_floats_range_waits_the_cap() -> None:
    """A growth past a float's range (a huge factor, or the defaults after a thousand attempts) is the cap, not an
    OverflowError."""
    assert Retry(attempts=2000, backoff_s=0.5, factor=2).delay_s(1025) == 30.0
    huge = Retry(attempts=4, backoff_s=0.001, factor=1e200, max_backoff_s=0.01)
    assert [huge.delay_s(n) for n in (1, 2, 3, 4)] == [0.001, 0.01, 0.01, 0.01]
    assert Retry(backoff_s=2.0, factor=10**400, max_backoff_s=7.0).delay_s(3) == 7.0
    assert Retry(backoff_s=0.0, factor=1e300, max_backoff_s=7.0).delay_s(5) == 0.0


def test_a_retry_whose_backoff_overflows_runs_every_attempt(build: Build, events: CapturedEvents) -> None:
    """`retry: {attempts: 4, factor: 1e200}` on a node that keeps failing: four attempts, then the node's own error."""
    module = build(
        """
        flowledger: 1
        workflow: {id: overflowing-backoff}
        nodes:
          - id: flaky
            call: "tests.workflow.nodes:flaky"
            with: {key: overflowing-backoff, failures: 100}
            retry: {attempts: 4, backoff_s: 0.001, factor: 1e200, max_backoff_s: 0.01}
        """
    )
    with pytest.raises(WorkflowFailed) as failed:
        asyncio.run(module.run(1))
    assert isinstance(failed.value.__cause__, ConnectionError)
    assert [e["data"]["attempt"] for e in events.nodes("flaky")] == [1, 2, 3, 4]
    assert events.runs()[0]["data"]["error"]["type"] == "ConnectionError"


ECHO = """
flowledger: 1
workflow: {id: strict-input}
nodes:
  - {id: only, call: "tests.workflow.nodes:echo"}
"""


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("NaN", "NaN is not a JSON number"),
        ("Infinity", "Infinity is not a JSON number"),
        ('{"low": -Infinity}', "-Infinity is not a JSON number"),
        ("[1e999]", "the number 1e999 is past a float's range"),
        ('{"x": -1e400}', "the number -1e400 is past a float's range"),
    ],
)
def test_main_refuses_numbers_json_has_not_with_exit_2(
    given: str, said: str, build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """NaN, the infinities and a number past a float's range are not JSON: exit 2 naming it, from --input and @file."""
    module = build(ECHO)
    assert main(module.WORKFLOW, ["--input", given]) == 2
    assert capsys.readouterr().err.startswith(f"error: --input is not valid JSON: {said}")
    payload = tmp_path / "in.json"
    payload.write_text(given, encoding="utf-8")
    assert main(module.WORKFLOW, ["--input", f"@{payload}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {payload} is not valid JSON: {said}")
    assert events.all == []


HTTP = """
flowledger: 1
workflow: {id: strict-body}
trigger:
  type: http
  http: {path: /go}
nodes:
  - {id: only, call: "tests.workflow.nodes:echo"}
"""


def _post(module: ModuleType, path: str, body: bytes) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            return await client.post(path, content=body)

    return asyncio.run(go())


def test_the_http_trigger_answers_400_to_numbers_json_has_not(build: Build, events: CapturedEvents) -> None:
    """A body of NaN, Infinity or 1e999 is not JSON: 400 naming it, and no run starts; the resume route too."""
    module = build(HTTP)
    for body, said in [
        (b"NaN", "NaN is not a JSON number"),
        (b"[Infinity]", "Infinity is not a JSON number"),
        (b'{"n": 1e999}', "the number 1e999 is past a float's range"),
    ]:
        response = _post(module, "/go", body)
        assert response.status_code == 400, body
        assert said in response.json()["error"]["message"]
    resume = _post(module, "/_flowledger/resume", b'{"run_id": "r", "from": NaN}')
    assert resume.status_code == 400
    assert events.all == []


@pytest.fixture
def big_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of node functions returning an integer past 64 bits, alone or beside a value JSON cannot hold."""
    name = f"big_steps_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            def alone(value):
                return {{"n": {BIG}, "m": 1}}

            def beside_nan(value):
                return {{"n": {BIG}, "m": float("nan")}}
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_an_integer_past_64_bits_prints_as_the_sdk_captures_it(
    big_steps: str, build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    """2**70 prints as the `int` marker whether or not another value of the output fails to encode, as recorded."""
    for function in ("alone", "beside_nan"):
        module = build(
            f"""
            flowledger: 1
            workflow: {{id: big-output}}
            nodes:
              - {{id: big, call: "{big_steps}:{function}"}}
            """
        )
        assert main(module.WORKFLOW, ["--input", "1"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["n"] == BIG_MARKER, function
        assert events.runs()[-1]["data"]["output"]["n"] == BIG_MARKER


def test_main_prints_integers_past_64_bits_as_markers_and_those_within_as_numbers(
    build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 64-bit range's ends are plain numbers, one past them a marker: the rule is the SDK's, to the unit."""
    module = build(ECHO)
    given = [-(2**63), 2**64 - 1, 2**64, -(2**63) - 1]
    assert main(module.WORKFLOW, ["--input", json.dumps(given)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[:2] == given[:2]
    assert [m["__flowledger__"] for m in printed[2:]] == ["int", "int"]


MAPPED_EFFECT = """
flowledger: 1
workflow: {{id: {key}}}
nodes:
  - id: act
    call: "tests.workflow.nodes:counted_effect"
    with: {{key: {key}}}
    effect: true
    map: {{max_concurrency: {concurrency}}}
"""


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[None]:
    """The idempotency guard on, in a folder of the test's own; the settings before come back after."""
    before = _pipeline.pipeline().settings
    flowledger.configure(idempotency_guard=True, idempotency_dir=tmp_path / "guard")
    yield
    _pipeline._create(before)


@pytest.mark.usefixtures("guard")
def test_equal_items_of_a_mapped_effect_each_run_once_and_dedupe_on_a_rerun(build: Build) -> None:
    """Two equal items of one run are two effects (with or without concurrency); a re-run of the same input finds
    each item done and repeats none."""
    for concurrency, items in [(1, [7, 7, 8]), (4, [7, 7, 7])]:
        key = f"mapped-effect-{concurrency}"
        module = build(MAPPED_EFFECT.format(key=key, concurrency=concurrency))
        with capture_events() as first:
            assert asyncio.run(module.run(items)) == [{"done": i} for i in items]
        assert nodes.calls(key) == len(items)
        attempts = sorted(first.nodes("act"), key=lambda e: e["data"]["item"])
        assert [e["data"].get("duplicate", False) for e in attempts] == [False] * len(items)
        assert len({e["data"]["idempotency_key"] for e in attempts}) == len(items)
        with capture_events() as again:
            assert asyncio.run(module.run(items)) == [{"done": i} for i in items]
        assert nodes.calls(key) == len(items)
        assert [e["data"].get("duplicate") for e in again.nodes("act")] == [True] * len(items)
