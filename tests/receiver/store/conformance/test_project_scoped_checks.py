"""With API keys on, the reconcile walk and the viewer's run-id search see the key's project alone.

Project ``alpha`` has a few runs, ``beta`` more, some under the same run-id prefix; over a real socket on
every engine, ``alpha``'s key learns nothing of ``beta``'s runs: not their ids (reconcile's ``next``), not
their events (``events_folded``), not how many match a search.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest

from flowledger._wire import new_event_id
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.store import _viewer_query
from tests.receiver._support import LiveReceiver, RunEvents, typical_run
from tests.receiver.store.conformance.conftest import bearer, keyed_receiver

_ALPHA, _BETA = "alpha", "beta"
_KEYS: Final = {"token-alpha-0123456789": _ALPHA, "token-beta-0123456789": _BETA}
_PREFIX: Final = "0aaa"


@pytest.fixture
def keyed(engine_kind: str, receiver_config: ReceiverConfig, request: pytest.FixtureRequest) -> Iterator[LiveReceiver]:
    """A receiver with one API key per project, on the engine under test."""
    with keyed_receiver(_KEYS, engine_kind, receiver_config, request) as receiver:
        yield receiver


def _as(project: str) -> dict[str, str]:
    return bearer(_KEYS, project)


def _prefixed_run() -> RunEvents:
    """A short run whose id starts with the shared prefix (the key gives its project)."""
    run = RunEvents()
    run.run_id = _PREFIX + new_event_id()[len(_PREFIX) :]
    return run.start().node("fetch").finish()


def _post(live: LiveReceiver, project: str, runs: list[RunEvents]) -> None:
    answer = live.post([event for run in runs for event in run.events], headers=_as(project))
    assert answer.json()["rejected"] == [], answer.text


def _walk(live: LiveReceiver, project: str, **params: Any) -> tuple[list[str], int, int]:
    """Every slice of GET /api/reconcile for ``project``'s key: the ``next`` values, runs checked, events folded."""
    after, checked, folded = "", 0, 0
    nexts: list[str] = []
    while True:
        answer = live.get("/api/reconcile", params={"after": after, **params}, headers=_as(project))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["clean"] is True
        checked += body["runs_checked"]
        folded += body["events_folded"]
        if body["next"] is None:
            return nexts, checked, folded
        nexts.append(body["next"])
        after = body["next"]


def test_reconcile_with_a_key_walks_counts_and_folds_its_project_only(keyed: LiveReceiver) -> None:
    """alpha's key walking /api/reconcile one run at a time visits alpha's run ids only, and its runs checked and
    events folded are alpha's, however many runs beta has (before: every run id of the database, beta's events)."""
    mine = [typical_run(), _prefixed_run()]
    theirs = [typical_run() for _ in range(4)] + [_prefixed_run() for _ in range(3)]
    _post(keyed, _ALPHA, mine)
    _post(keyed, _BETA, theirs)
    my_ids = {run.run_id for run in mine}
    my_events = sum(len(run.events) for run in mine)

    nexts, checked, folded = _walk(keyed, _ALPHA, limit=1)
    assert set(nexts) <= my_ids
    assert (checked, folded) == (len(mine), my_events)
    assert _walk(keyed, _ALPHA) == ([], len(mine), my_events)
    repair = httpx.post(f"{keyed.url}/api/reconcile", params={"limit": 1}, headers=_as(_ALPHA), timeout=30).json()
    assert repair["next"] in my_ids
    assert (repair["runs_checked"], repair["repaired"]) == (1, 0)

    their_nexts, their_checked, their_folded = _walk(keyed, _BETA, limit=3)
    assert not set(their_nexts) & my_ids
    assert (their_checked, their_folded) == (len(theirs), sum(len(run.events) for run in theirs))


@pytest.mark.parametrize("route", ["/api/viewer/runs", "/api/viewer/summary"])
def test_a_run_id_search_counts_the_keys_project_only(
    keyed: LiveReceiver, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """beta has more runs under a prefix than the search cap, alpha one: alpha's search answers alpha's run, not
    a 400 revealing beta's count (before: 'matches more than ... runs'); beta's own search is still capped."""
    from flowledger.receiver.store.postgres import _viewer as pg_viewer

    mine = _prefixed_run()
    _post(keyed, _ALPHA, [mine])
    _post(keyed, _BETA, [_prefixed_run() for _ in range(3)])
    monkeypatch.setattr(_viewer_query, "RUN_ID_SEARCH_MAX_MATCHES", 2)
    monkeypatch.setattr(pg_viewer, "RUN_ID_SEARCH_MAX_MATCHES", 2)

    answer = keyed.get(route, params={"q": _PREFIX}, headers=_as(_ALPHA))
    assert answer.status_code == 200, answer.text
    if route == "/api/viewer/runs":
        assert [run["run_id"] for run in answer.json()["runs"]] == [mine.run_id]
    capped = keyed.get(route, params={"q": _PREFIX}, headers=_as(_BETA))
    assert capped.status_code == 400
    assert "type more of the run id" in capped.json()["error"]
