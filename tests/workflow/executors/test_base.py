"""The executor seam: local is the default, names are checked, and a run can be given an executor of its own."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from flowledger._exceptions import ConfigError
from flowledger._wire import RunStatus
from flowledger.testing import CapturedEvents
from flowledger.workflow import Call, Execution, Node, Retry, Workflow, execute_run
from flowledger.workflow._host import NodeHost
from flowledger.workflow._spec import Env, Http
from flowledger.workflow.executors import EXECUTOR_ENV, Executor, LocalExecutor, executor_named
from flowledger.workflow.executors._node_json import node_from_json, node_to_json
from flowledger.workflow.executors._remote_attempt import attempt_request, new_span_id, run_requested_attempt


def test_local_is_the_default_and_names_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """No name and no variable: local. An unknown name is a ConfigError listing the executors."""
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert isinstance(executor_named(), LocalExecutor)
    assert executor_named("local") is executor_named()
    with pytest.raises(ConfigError, match=r"--executor 'ray' is not an executor: use one of celery, local"):
        executor_named("ray")
    monkeypatch.setenv(EXECUTOR_ENV, "dask")
    with pytest.raises(ConfigError, match="FLOWLEDGER_EXECUTOR 'dask'"):
        executor_named()


class CountingExecutor:
    """An executor of the test's own: runs locally, counting the attempts it was given."""

    name = "counting"

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    async def run_attempt(self, host: NodeHost, node: Node, value: Any, number: int, item: int | None) -> Any:
        self.attempts.append((node.id, number))
        return await LocalExecutor().run_attempt(host, node, value, number, item)


def test_a_run_hands_every_attempt_to_its_executor(events: CapturedEvents) -> None:
    """Retries go through the executor attempt by attempt; the scheduler keeps the retry policy."""
    executor = CountingExecutor()
    assert isinstance(executor, Executor)
    workflow = Workflow(
        id="seam",
        nodes=(
            Node(
                id="flaky",
                call=Call("tests.workflow.nodes", "flaky"),
                kwargs={"key": "seam-flaky", "failures": 1},
                retry=Retry(attempts=3),
            ),
        ),
        output="flaky",
    )
    result = asyncio.run(execute_run(workflow, 5, executor=executor))
    assert result.status is RunStatus.SUCCEEDED
    assert executor.attempts == [("flaky", 1), ("flaky", 2)]
    assert [e["data"]["status"] for e in events.nodes("flaky")] == ["failed", "succeeded"]
    assert Execution is not None


def test_a_node_spec_crosses_as_json() -> None:
    """Calls, http requests, kwargs and {env: NAME} references survive the trip; retries stay behind."""
    node = Node(
        id="n",
        http=Http(url="http://x/hook", method="PUT", headers={"Authorization": Env("TOKEN")}),
        kwargs={"a": [1, 2], "key": Env("KEY")},
        timeout_s=2.5,
        effect=True,
        retry=Retry(attempts=4),
    )
    workflow = Workflow(id="w", nodes=(node,), output="n", definition_file="wf.yaml")
    back, location = node_from_json(node_to_json(node, workflow.locations["n"]))
    assert back.http == node.http
    assert back.kwargs == node.kwargs
    assert (back.timeout_s, back.effect, back.retry.attempts) == (2.5, True, 1)
    assert location == workflow.locations["n"]
    with pytest.raises(ValueError, match="not a node spec"):
        node_from_json({"call": ["m"]})


def test_a_worker_answers_a_bad_request_without_raising() -> None:
    """A request that is not one is answered as an error, never raised in the worker."""
    answer = run_requested_attempt({"node": {"id": "x"}})
    assert answer["kind"] == "error"
    assert "bad attempt request" in answer["message"]


def test_a_requested_attempt_is_recorded_under_the_callers_run(events: CapturedEvents) -> None:
    """Run here as a worker would: the attempt joins the run, with the span id the scheduler chose."""
    import flowledger

    node = Node(id="double", call=Call("tests.workflow.nodes", "double"))
    workflow = Workflow(id="remote", nodes=(node,), output="double")
    with flowledger.run("remote") as run:
        host = NodeHost(workflow, run, dry_run=False)
        span_id = new_span_id()
        request = attempt_request(host, node, 21, 1, None, span_id)
    answer = run_requested_attempt(request)
    assert (answer["kind"], answer["output"]) == ("ok", 42)
    [finished] = events.nodes("double")
    assert finished["run_id"] == run.run_id
    assert finished["data"]["span_id"] == span_id
    assert finished["data"]["trace_id"] == run.trace_id
    assert finished["data"]["parent_span_id"] == run.span_id


def _broken_factory() -> Executor:
    raise ImportError("No module named 'ray'")


def _not_an_executor() -> Executor:
    return object()  # type: ignore[return-value]


def test_a_registered_executor_that_cannot_be_built_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A factory that raises, or returns no Executor, is a ConfigError naming the executor, the error, the factory."""
    from flowledger.workflow.executors import EXECUTORS

    monkeypatch.setitem(EXECUTORS, "broken", _broken_factory)
    monkeypatch.setitem(EXECUTORS, "hollow", _not_an_executor)
    with pytest.raises(
        ConfigError, match=r"^the executor 'broken' cannot be loaded: ImportError: No module named 'ray'"
    ):
        executor_named("broken")
    with pytest.raises(ConfigError, match=r"the executor 'hollow' cannot be loaded: its factory .*_not_an_executor "):
        executor_named("hollow")
    with pytest.raises(ConfigError, match=r"returned object, not an Executor"):
        executor_named("hollow")


def test_a_generated_module_exits_2_when_its_executor_cannot_be_loaded(tmp_path: Any) -> None:
    """--executor naming a registered executor whose factory raises: one error line, exit 2, no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    from flowledger.codegen import generate

    root = Path(__file__).resolve().parents[3]
    definition = tmp_path / "wf.yaml"
    definition.write_text(
        "flowledger: 1\nworkflow: {id: broken-executor}\nnodes:\n  - {id: one, call: 'tests.workflow.nodes:double'}\n"
    )
    module = tmp_path / "wf.py"
    module.write_text(generate(definition))
    launcher = tmp_path / "launch.py"
    launcher.write_text(
        "import runpy, sys\n"
        "from flowledger.workflow.executors import EXECUTORS\n"
        "def broken():\n"
        "    raise RuntimeError('the cluster is not configured')\n"
        "EXECUTORS['broken'] = broken\n"
        "EXECUTORS['hollow'] = object\n"
        f"sys.argv = [{str(module)!r}, *sys.argv[1:]]\n"
        f"runpy.run_path({str(module)!r}, run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    broken = subprocess.run(
        [sys.executable, str(launcher), "--input", "2", "--executor", "broken"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broken.returncode == 2, broken.stderr
    assert broken.stderr.startswith(
        "error: the executor 'broken' cannot be loaded: RuntimeError: the cluster is not configured"
    ), broken.stderr
    assert "Traceback" not in broken.stderr
    hollow = subprocess.run(
        [sys.executable, str(launcher), "--input", "2", "--executor", "hollow"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert hollow.returncode == 2, hollow.stderr
    assert "error: the executor 'hollow' cannot be loaded: its factory builtins.object returned object" in hollow.stderr
    assert "Traceback" not in hollow.stderr
