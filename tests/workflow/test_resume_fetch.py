"""Reading the run to resume: the URL asked (below the endpoint's path, its query kept) and how messages name it."""

from __future__ import annotations

import pytest

from flowledger.workflow import Call, Node, Workflow, main
from tests.instrument._fixed_answer import fixed_answer

WF = Workflow(id="fetch", nodes=(Node("a", call=Call("m", "a")),), output="a", definition_sha256="1" * 64)


@pytest.mark.parametrize(("status", "said"), [(404, "has no run r1"), (401, "answered 401 for run r1: scripted")])
def test_resume_asks_below_the_endpoint_path_and_names_the_receiver_masked(
    status: int, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--endpoint with user:password and ?token=: the run is read at /base/api/runs/r1/outputs?token=...;
    the error names the receiver with its userinfo and query masked."""
    with fixed_answer(status) as receiver:
        endpoint = f"http://user:pw123@127.0.0.1:{receiver.port}/base/?token=qsecret"
        assert main(WF, ["--resume", "r1", "--endpoint", endpoint]) == 1
        seen = receiver.seen
    assert [(s.method, s.target) for s in seen] == [("GET", "/base/api/runs/r1/outputs?token=qsecret")]
    err = capsys.readouterr().err
    assert err == f"error: the receiver at http://***@127.0.0.1:{receiver.port}/base/?token=*** {said}\n"


def test_an_unreachable_receiver_is_named_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """A receiver that refuses the connection is named without its password or query values."""
    with fixed_answer(404) as receiver:
        port = receiver.port
    assert main(WF, ["--resume", "r1", "--endpoint", f"http://user:pw123@127.0.0.1:{port}?token=qsecret"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read run r1 from the receiver at http://***@127.0.0.1:{port}?token=***: ")
    assert "pw123" not in err
    assert "qsecret" not in err


def test_a_project_is_added_to_the_endpoint_query_not_put_in_its_place(capsys: pytest.CaptureFixture[str]) -> None:
    """--project adds ?project= after the endpoint's own query parameters, which are still sent."""
    with fixed_answer(404) as receiver:
        endpoint = f"http://127.0.0.1:{receiver.port}?token=qsecret"
        assert main(WF, ["--resume", "r1", "--endpoint", endpoint, "--project", "shop"]) == 1
        seen = receiver.seen
    assert [s.target for s in seen] == ["/api/runs/r1/outputs?token=qsecret&project=shop"]
    assert "has no run r1 of project 'shop'" in capsys.readouterr().err
