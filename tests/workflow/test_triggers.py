"""http nodes, the http trigger's ASGI app, the schedule loop and the command line of a generated module."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import flowledger
from flowledger._exceptions import WorkflowFailed
from flowledger._wire import parse_ts
from flowledger.testing import CapturedEvents
from flowledger.workflow import execute, main, serve_schedule
from tests.instrument.delivery._sender_support import REPO_ROOT, child_env, silent_listener, spooled_events

Build = Callable[..., ModuleType]

HTTP_NODE = """
flowledger: 1
workflow: {id: hooks}
nodes:
  - id: notify
    http:
      url: "http://hooks.test/receive"
      headers: {X-Token: {env: FLOWLEDGER_TEST_TOKEN}, X-Static: "yes"}
"""


def test_http_node_sends_json_with_traceparent_and_returns_the_reply(
    build: Build, events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node POSTs its input as JSON with the headers and the attempt's traceparent; the reply is its output."""
    monkeypatch.setenv("FLOWLEDGER_TEST_TOKEN", "tok-123")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"received": json.loads(request.content)})

    module = build(HTTP_NODE)
    output = asyncio.run(execute(module.WORKFLOW, {"a": 1}, transport=httpx.MockTransport(handler)))
    assert output == {"received": {"a": 1}}
    request = seen[0]
    assert request.method == "POST"
    assert request.headers["x-token"] == "tok-123"
    assert request.headers["x-static"] == "yes"
    trace_id = events.of_kind("run_started")[0]["data"]["trace_id"]
    version, trace, span, _flags = request.headers["traceparent"].split("-")
    assert (version, trace) == ("00", trace_id)
    assert span == events.nodes("notify")[0]["data"]["span_id"]
    assert "tok-123" not in json.dumps(events.all)
    attributes = events.nodes("notify")[0]["data"]["attributes"]
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.response.status_code"] == 200


def test_http_node_error_status_fails_the_attempt(build: Build, events: CapturedEvents) -> None:
    """A reply outside 2xx fails the node with the status code and the start of the body."""
    module = build(HTTP_NODE.replace('{X-Token: {env: FLOWLEDGER_TEST_TOKEN}, X-Static: "yes"}', "{}"))
    transport = httpx.MockTransport(lambda request: httpx.Response(503, text="down for maintenance"))
    with pytest.raises(WorkflowFailed):
        asyncio.run(execute(module.WORKFLOW, None, transport=transport))
    error = events.nodes("notify")[0]["data"]["error"]
    assert error["type"] == "flowledger.workflow.HttpNodeError"
    assert error["message"] == "POST http://hooks.test/receive answered 503 Service Unavailable: down for maintenance"
    assert events.nodes("notify")[0]["data"]["attributes"]["http.response.status_code"] == 503


HTTP_TRIGGER = """
flowledger: 1
workflow: {id: api}
trigger: {type: http, http: {path: /orders}}
nodes:
  - {id: check, call: "tests.workflow.nodes:is_positive"}
  - {id: fail_on_zero, call: "tests.workflow.nodes:flaky", needs: [check], with: {key: never, failures: 0}}
"""


def _client(module: ModuleType) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=module.app), base_url="http://app.test")


def test_http_trigger_runs_the_workflow_and_answers_with_its_output(build: Build, events: CapturedEvents) -> None:
    """POST on the trigger path runs the workflow (trigger http), continues the caller's trace, answers the output."""
    module = build(HTTP_TRIGGER)
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def go() -> httpx.Response:
        async with _client(module) as client:
            return await client.post("/orders", json=5, headers={"traceparent": incoming})

    response = asyncio.run(go())
    assert response.status_code == 200
    assert response.json() is True
    started = events.of_kind("run_started")[0]
    assert started["data"]["trigger_type"] == "http"
    assert started["data"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert response.headers["x-flowledger-run-id"] == started["run_id"]


def test_http_trigger_rejects_bad_json_with_400(build: Build, events: CapturedEvents) -> None:
    """A body that is not JSON is a 400 naming the problem, and no run starts."""
    module = build(HTTP_TRIGGER)

    async def go() -> httpx.Response:
        async with _client(module) as client:
            return await client.post("/orders", content=b"{not json")

    response = asyncio.run(go())
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    assert events.all == []


def test_http_trigger_answers_500_with_the_run_id_when_the_run_fails(build: Build, events: CapturedEvents) -> None:
    """A failed run answers 500 with the run id and the failing node."""
    module = build(HTTP_TRIGGER.replace("tests.workflow.nodes:is_positive", "tests.workflow.nodes:boom"))

    async def go() -> httpx.Response:
        async with _client(module) as client:
            return await client.post("/orders", json=1)

    response = asyncio.run(go())
    assert response.status_code == 500
    body = response.json()
    assert body["run_id"] == events.runs()[0]["run_id"]
    assert body["error"]["node_id"] == "check"
    assert body["status"] == "failed"


def test_schedule_loop_runs_on_its_interval_without_overlap(build: Build, events: CapturedEvents) -> None:
    """The schedule loop starts runs with trigger `schedule`; a run never starts before the previous one ended."""
    module = build(
        """
        flowledger: 1
        workflow: {id: ticking}
        trigger: {type: schedule, schedule: {every_s: 0.01}}
        nodes:
          - {id: tick, call: "tests.workflow.nodes:sleepy", with: {delay_s: 0.05}}
        """
    )
    results = asyncio.run(serve_schedule(module.WORKFLOW, "t", max_runs=3))
    assert [r.status.value for r in results] == ["succeeded"] * 3
    starts = events.of_kind("run_started")
    assert {e["data"]["trigger_type"] for e in starts} == {"schedule"}
    finished = events.runs()
    for earlier, later in zip(finished, starts[1:], strict=False):
        end = parse_ts(earlier["data"]["started_at"]).timestamp() + earlier["data"]["duration_ms"] / 1000
        assert parse_ts(later["ts"]).timestamp() >= end - 0.001


def test_main_prints_the_output_and_exits_0(
    build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--input JSON` runs once with trigger manual and prints the output as JSON."""
    module = build(
        """
        flowledger: 1
        workflow: {id: cli}
        nodes:
          - {id: twice, call: "tests.workflow.nodes:double"}
        """
    )
    assert main(module.WORKFLOW, ["--input", "21"]) == 0
    assert json.loads(capsys.readouterr().out) == 42
    assert events.of_kind("run_started")[0]["data"]["trigger_type"] == "manual"


def test_main_reads_input_from_a_file_and_reports_failures(
    build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    """`--input @file` reads the payload; a failed run exits 1 naming the run and the failing node."""
    from pathlib import Path

    payload = Path(str(tmp_path)) / "in.json"
    payload.write_text('{"k": 1}')
    module = build(
        """
        flowledger: 1
        workflow: {id: clifail}
        nodes:
          - {id: explode, call: "tests.workflow.nodes:boom"}
        """
    )
    assert main(module.WORKFLOW, ["--input", f"@{payload}"]) == 1
    err = capsys.readouterr().err
    run_id = events.runs()[0]["run_id"]
    assert f"workflow clifail: run {run_id} failed at node `explode`: ValueError: boom on {{'k': 1}}" in err


def test_main_rejects_bad_input_with_exit_2(build: Build, capsys: pytest.CaptureFixture[str]) -> None:
    """Input that is not JSON exits 2 with one clear line and starts no run."""
    module = build(
        """
        flowledger: 1
        workflow: {id: clibad}
        nodes:
          - {id: only, call: "tests.workflow.nodes:echo"}
        """
    )
    assert main(module.WORKFLOW, ["--input", "{oops"]) == 2
    assert capsys.readouterr().err.startswith("error: --input is not valid JSON")
    assert main(module.WORKFLOW, ["--serve"]) == 2


def test_main_refuses_an_input_file_that_is_not_utf8_with_exit_2(
    build: Build, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`--input @FILE` with bytes that are not UTF-8 exits 2 with one line naming the file and the first bad byte."""
    module = build(
        """
        flowledger: 1
        workflow: {id: clibytes}
        nodes:
          - {id: only, call: "tests.workflow.nodes:echo"}
        """
    )
    payload = tmp_path / "b.json"
    payload.write_bytes(b'{"k": "\xff\xfe"}')
    assert main(module.WORKFLOW, ["--input", f"@{payload}"]) == 2
    assert capsys.readouterr().err == f"error: the input file {payload} is not UTF-8 text (byte 0xff at offset 7)\n"


@pytest.mark.parametrize("port", ["99999", "70000", "-1", "0", "http"])
def test_serve_refuses_a_port_out_of_range_at_once(port: str, write_definition: Callable[..., Path]) -> None:
    """`--serve --port` outside 1-65535 is a usage error (exit 2, naming the option) instead of a silent hang."""
    from flowledger.codegen import generate

    module = write_definition(HTTP_TRIGGER).with_name("api.py")
    module.write_text(generate(write_definition(HTTP_TRIGGER), display_name="wf.yaml"), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(module), "--serve", "--port", port],
        cwd=REPO_ROOT,
        env=child_env(FLOWLEDGER_DISABLED="1"),
        capture_output=True,
        text=True,
        timeout=PORT_REFUSAL_TIMEOUT_S,
    )
    assert done.returncode == 2
    assert "error: argument --port:" in done.stderr
    assert "not a port number" in done.stderr
    assert "1 to 65535" in done.stderr


PORT_REFUSAL_TIMEOUT_S = 30.0
"""A refused port exits as soon as the arguments are parsed; past this, the module is hanging as it used to."""


def test_http_get_node_sends_no_body_and_returns_text_replies(build: Build, events: CapturedEvents) -> None:
    """A GET node sends no body; a reply that is not JSON comes back as text, an empty one as None."""
    module = build(
        """
        flowledger: 1
        workflow: {id: getter}
        output: second
        nodes:
          - {id: first, http: {method: get, url: "http://rates.test/text"}}
          - {id: second, http: {method: DELETE, url: "http://rates.test/empty"}, needs: [first]}
        """
    )
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if request.url.path == "/text":
            return httpx.Response(200, text="rate=1.1")
        return httpx.Response(204)

    assert asyncio.run(execute(module.WORKFLOW, {"x": 1}, transport=httpx.MockTransport(handler))) is None
    assert bodies == [b"", b""]
    assert events.nodes("first")[0]["data"]["output"] == "rate=1.1"


def test_main_reads_input_from_stdin(
    build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--input -` reads the JSON payload from standard input."""
    import io

    module = build(
        """
        flowledger: 1
        workflow: {id: stdin}
        nodes:
          - {id: twice, call: "tests.workflow.nodes:double"}
        """
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("5"))
    assert main(module.WORKFLOW, ["--input", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == 10


def test_next_cron_time_is_strictly_later_and_in_utc() -> None:
    """The next cron time is the first matching minute after the given time, evaluated in UTC."""
    from datetime import UTC, datetime

    from flowledger.workflow import next_cron_time

    at = datetime(2026, 11, 23, 10, 5, 0, tzinfo=UTC).timestamp()  # a Monday, 10:05 UTC
    assert datetime.fromtimestamp(next_cron_time("5 * * * 1-5", at), UTC) == datetime(2026, 11, 23, 11, 5, tzinfo=UTC)
    assert datetime.fromtimestamp(next_cron_time("*/15 * * * *", at + 0.5), UTC) == datetime(
        2026, 11, 23, 10, 15, tzinfo=UTC
    )


def test_schedule_needs_exactly_one_timing() -> None:
    """A Schedule spec with neither or both of every_s and cron is refused."""
    from flowledger import ConfigError
    from flowledger.workflow import Schedule

    with pytest.raises(ConfigError):
        Schedule()
    with pytest.raises(ConfigError):
        Schedule(every_s=1.0, cron="* * * * *")


def test_http_serve_without_its_extra_is_one_clear_line(
    build: Build, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without starlette/uvicorn installed, `--serve` on an http trigger exits 2 naming the extra to install."""
    import sys

    module = build(HTTP_TRIGGER)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(module.WORKFLOW, ["--serve"]) == 2
    assert (
        capsys.readouterr().err == "error: serving an http trigger needs uvicorn: pip install 'flowledger[receiver]'\n"
    )


EXIT_HOLD_BOUND_S = 2.0
"""Generous for a busy machine: the SDK's exit budget is 0.3 s; the command line used to wait 2 s more for its own
flush (2.3 s at least), which this still catches."""


def test_command_line_exit_is_not_held_by_a_receiver_that_never_answers(
    write_definition: Callable[..., Path], tmp_path: Path
) -> None:
    """`python OUT.py --input` exits within the SDK's exit budget when the receiver hangs, and spools the run."""
    from flowledger.codegen import generate

    definition = write_definition(
        """
        flowledger: 1
        workflow: {id: exithold}
        nodes:
          - {id: twice, call: "tests.workflow.nodes:double"}
        """
    )
    module = tmp_path / "exithold.py"
    module.write_text(generate(definition, display_name="wf.yaml"), encoding="utf-8")
    spool_dir = tmp_path / "spool"
    with silent_listener() as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = child_env(FLOWLEDGER_ENDPOINT=url, FLOWLEDGER_SPOOL_DIR=str(spool_dir), FLOWLEDGER_EXPORT_SPANS="1")
        proc = subprocess.Popen(
            [sys.executable, str(module), "--input", "21"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline()) == 42  # the work is done
            done_at = time.monotonic()
            proc.wait(timeout=30)
            held_s = time.monotonic() - done_at
        finally:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert held_s < EXIT_HOLD_BOUND_S
    spooled = spooled_events(spool_dir)
    assert sorted(e["kind"] for e in spooled) == ["node_finished", "run_finished", "run_started"]
    assert {e["data"]["status"] for e in spooled if e["kind"] == "run_finished"} == {"succeeded"}


FAILING = """
flowledger: 1
workflow: {id: offline}
nodes:
  - {id: explode, call: "tests.workflow.nodes:boom"}
"""


def test_a_failing_run_with_flowledger_disabled_names_no_empty_run_id(
    write_definition: Callable[..., Path], tmp_path: Path
) -> None:
    """FLOWLEDGER_DISABLED=1: a failing generated workflow says the run was not recorded instead of `run  failed`."""
    from flowledger.codegen import generate

    module = tmp_path / "offline.py"
    module.write_text(generate(write_definition(FAILING), display_name="wf.yaml"), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(module), "--input", "1"],
        cwd=REPO_ROOT,
        env=child_env(FLOWLEDGER_DISABLED="1", FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "workflow offline: the run (not recorded) failed at node `explode`: ValueError: boom on 1"
    )


def test_without_a_recorded_run_the_api_and_app_carry_no_empty_run_id(build: Build) -> None:
    """Disabled: WorkflowFailed has run_id None, and the http app's 500 has run_id null and no run id header."""
    from flowledger.instrument import _pipeline

    before = _pipeline.pipeline().settings
    flowledger.configure(disabled=True)
    try:
        module = build(FAILING)
        with pytest.raises(WorkflowFailed) as caught:
            asyncio.run(module.run(1))
        assert caught.value.run_id is None
        assert "(not recorded)" in str(caught.value)
        assert "(run )" not in str(caught.value)
        app_module = build(HTTP_TRIGGER.replace("tests.workflow.nodes:is_positive", "tests.workflow.nodes:boom"))

        async def go() -> httpx.Response:
            async with _client(app_module) as client:
                return await client.post("/orders", json=1)

        response = asyncio.run(go())
    finally:
        _pipeline._create(before)
    assert response.status_code == 500
    assert response.json()["run_id"] is None
    assert "x-flowledger-run-id" not in response.headers


DEEP_JSON = "[" * 100_000 + "]" * 100_000
"""Valid JSON nested deeper than the JSON parser's recursion allows."""


def test_main_refuses_input_nested_too_deeply_with_exit_2(
    build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`--input @FILE` nested past the parser's recursion exits 2 with one line (no RecursionError), starts no run."""
    module = build(
        """
        flowledger: 1
        workflow: {id: clideep}
        nodes:
          - {id: only, call: "tests.workflow.nodes:echo"}
        """
    )
    payload = tmp_path / "deep.json"
    payload.write_text(DEEP_JSON, encoding="utf-8")
    assert main(module.WORKFLOW, ["--input", f"@{payload}"]) == 2
    assert capsys.readouterr().err == f"error: {payload} is nested too deeply to read as JSON: flatten it\n"
    assert main(module.WORKFLOW, ["--input", DEEP_JSON]) == 2
    assert capsys.readouterr().err.startswith("error: --input is nested too deeply")
    assert events.all == []


def test_http_trigger_answers_400_to_a_body_nested_too_deeply(build: Build, events: CapturedEvents) -> None:
    """A JSON body nested past the parser's recursion is a 400 naming the problem (not a 500), and no run starts."""
    module = build(HTTP_TRIGGER)

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with _client(module) as client:
            run = await client.post("/orders", content=DEEP_JSON.encode())
            resume = await client.post("/_flowledger/resume", content=DEEP_JSON.encode())
            return run, resume

    response, resume = asyncio.run(go())
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]
    assert resume.status_code == 400
    assert events.all == []


@pytest.mark.parametrize(
    ("node", "printed"),
    [
        ("circular", [1, {"__flowledger__": "cycle", "type": "list"}]),
        ("tuple_keys", {"(1, 2)": 1}),
        ("huge_int", {"__flowledger__": "int", "value": "1e5000", "digits": 5001}),
        ("not_a_number", {"__flowledger__": "float", "value": "nan"}),
        ("surrogate", "lone \ufffd 1"),
    ],
)
def test_an_output_json_cannot_hold_is_printed_as_captured_and_exits_0(
    node: str, printed: Any, build: Build, events: CapturedEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    """A succeeded run whose output is a cycle, a tuple key, a huge int, NaN or a lone surrogate prints valid JSON."""
    module = build(
        f"""
        flowledger: 1
        workflow: {{id: cliodd}}
        nodes:
          - {{id: odd, call: "tests.workflow.nodes:{node}"}}
        """
    )
    assert main(module.WORKFLOW, ["--input", "1"]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")  # no lone surrogate left: it can be written to a UTF-8 stdout
    assert json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON")) == printed
    assert events.of_kind("run_finished")[0]["data"]["status"] == "succeeded"
