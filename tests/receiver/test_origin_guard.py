"""Where a request may come from: a receiver answers only to its own names, and takes no change a browser sent
from another site (DNS rebinding and cross-site request forgery), while the SDK, the command line and its own
viewer go on as before."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from flowledger._exceptions import ConfigError
from flowledger.receiver._config import ReceiverConfig, config_from_env, parse_allowed_hosts
from flowledger.receiver._origin_guard import ANY_HOST, allowed_hosts_for, host_name
from tests.receiver._support import LiveReceiver, RunEvents, start_receiver

_CROSS_SITE = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}


def _runs(live: LiveReceiver) -> list[str]:
    return [run["workflow_id"] for run in live.get("/api/runs").json()["runs"]]


def test_changes_a_browser_sends_from_another_site_are_refused(live: LiveReceiver) -> None:
    """The simple requests a page on another site can make without asking first (a text/plain fetch, a form)
    inject nothing and purge nothing: 403 naming why, and the ledger is as it was."""
    victim = RunEvents(workflow_id="victim").start().node("a").finish("succeeded")
    assert live.post(victim.events).status_code == 200
    forged = RunEvents(workflow_id="forged").start().finish("failed")
    body = json.dumps({"events": forged.events})
    text_plain = {**_CROSS_SITE, "Content-Type": "text/plain;charset=UTF-8"}
    answers = [
        httpx.post(f"{live.url}/v1/events", content=body, headers=text_plain),
        httpx.post(f"{live.url}/api/purge", content='{"workflow_id": "victim"}', headers=text_plain),
        httpx.post(f"{live.url}/api/rebuild", headers=text_plain),
        httpx.post(f"{live.url}/api/reconcile", headers={**_CROSS_SITE, "Content-Type": "text/plain"}),
        httpx.post(f"{live.url}/api/runs/{victim.run_id}/resume", headers=_CROSS_SITE),
        httpx.delete(f"{live.url}/api/runs/{victim.run_id}", headers={**_CROSS_SITE, "Sec-Fetch-Site": "same-site"}),
    ]
    for answer in answers:
        assert answer.status_code == 403, (answer.request.url, answer.text)
        assert "from another site" in answer.json()["error"]
    # A browser too old to send Sec-Fetch-Site still sends Origin with a POST.
    old_browser = httpx.post(
        f"{live.url}/api/purge", content='{"workflow_id": "victim"}', headers={"Origin": "http://evil.example"}
    )
    assert old_browser.status_code == 403
    assert "from another origin" in old_browser.json()["error"]
    assert (
        httpx.post(f"{live.url}/api/purge", json={"workflow_id": "victim"}, headers={"Origin": "null"}).status_code
        == 403
    )
    assert _runs(live) == ["victim"]
    # Reads stay open to any page's links (their answers are not readable cross-site: no CORS headers).
    assert live.get("/api/runs", headers=_CROSS_SITE).status_code == 200


def test_the_viewers_own_changes_and_clients_outside_a_browser_go_through(live: LiveReceiver) -> None:
    first = RunEvents(workflow_id="kept").start().finish("succeeded")
    assert live.post(first.events).status_code == 200  # the SDK: neither header
    same_origin = {"Origin": live.url, "Sec-Fetch-Site": "same-origin"}
    second = RunEvents(workflow_id="viewer").start().finish("succeeded")
    assert httpx.post(f"{live.url}/v1/events", json={"events": second.events}, headers=same_origin).status_code == 200
    assert httpx.post(f"{live.url}/api/purge", json={"workflow_id": "viewer"}, headers=same_origin).status_code == 200
    # An older browser on the receiver's own page: Origin names the receiver's host and port.
    third = RunEvents(workflow_id="old-viewer").start().finish("succeeded")
    answer = httpx.post(f"{live.url}/v1/events", json={"events": third.events}, headers={"Origin": live.url})
    assert answer.status_code == 200
    assert sorted(_runs(live)) == ["kept", "old-viewer"]


def test_a_name_the_receiver_does_not_answer_to_is_refused(live: LiveReceiver) -> None:
    """A page whose name was pointed at 127.0.0.1 (DNS rebinding) reads nothing and deletes nothing."""
    run = RunEvents(workflow_id="private").start().finish("succeeded")
    assert live.post(run.events).status_code == 200
    port = live.url.rsplit(":", 1)[1]
    rebound = {"Host": f"rebind.evil.example:{port}"}
    for answer in (
        live.get("/api/runs", headers=rebound),
        live.get("/", headers=rebound),
        httpx.delete(f"{live.url}/api/runs/{run.run_id}", headers={**rebound, "Sec-Fetch-Site": "same-origin"}),
    ):
        assert answer.status_code == 403
        assert "'rebind.evil.example'" in answer.json()["error"]
        assert "FLOWLEDGER_RECEIVER_ALLOWED_HOSTS" in answer.json()["error"]
    for name in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert live.get("/api/runs", headers={"Host": name}).status_code == 200, name
    assert _runs(live) == ["private"]


def test_names_set_in_the_environment_are_answered(receiver_config: ReceiverConfig) -> None:
    config = config_from_env(replace(receiver_config), {"FLOWLEDGER_RECEIVER_ALLOWED_HOSTS": "ledger.example.com"})
    receiver = start_receiver(config)
    try:
        for name in ("ledger.example.com", "localhost", "127.0.0.1", "10.1.2.3:4318"):  # added to, not replaced
            assert receiver.get("/api/runs", headers={"Host": name}).status_code == 200, name
        assert receiver.get("/api/runs", headers={"Host": "other.example.com"}).status_code == 403
    finally:
        receiver.stop()
    receiver = start_receiver(replace(receiver_config, allowed_hosts=(ANY_HOST,)))
    try:
        assert receiver.get("/api/runs", headers={"Host": "anything.example"}).status_code == 200
    finally:
        receiver.stop()


def test_the_names_follow_the_listening_address() -> None:
    own = host_name(socket.gethostname())
    loopback = ("localhost", own)
    assert allowed_hosts_for("127.0.0.1", None) == loopback
    assert allowed_hosts_for("127.0.0.2", None) == loopback
    assert allowed_hosts_for("::1", None) == loopback
    assert allowed_hosts_for("localhost", None) == loopback
    assert allowed_hosts_for("0.0.0.0", None) == (ANY_HOST,)
    assert allowed_hosts_for("10.1.2.3", None) == (ANY_HOST,)
    assert allowed_hosts_for("0.0.0.0", ("ledger.example.com",)) == (*loopback, "ledger.example.com")
    assert allowed_hosts_for("127.0.0.1", ("Ledger.example.com",)) == (*loopback, "ledger.example.com")
    assert allowed_hosts_for("127.0.0.1", ("ledger", "*")) == (ANY_HOST,)
    assert [host_name(h) for h in ("[::1]:4318", "Example.COM.:80", "127.0.0.1", "::1")] == [
        "::1",
        "example.com",
        "127.0.0.1",
        "::1",
    ]


def test_addresses_the_machines_name_and_localhost_names_are_always_answered(live: LiveReceiver) -> None:
    """Rebinding needs a name: an IP address as Host is answered, as are the machine's own name (often pointed at
    127.0.0.1 in /etc/hosts) and any *.localhost (which resolves to loopback only)."""
    port = live.url.rsplit(":", 1)[1]
    for name in ("10.9.8.7", f"192.168.1.20:{port}", "[fe80::1]", socket.gethostname(), "app.localhost"):
        assert live.get("/healthz", headers={"Host": name}).status_code == 200, name
    assert live.get("/healthz", headers={"Host": "rebind.evil.example"}).status_code == 403


def test_allowed_hosts_are_checked_where_they_are_read() -> None:
    assert parse_allowed_hosts(" ledger.example.com, 10.0.0.5 ,[::1], *") == (
        "ledger.example.com",
        "10.0.0.5",
        "::1",
        "*",
    )
    for bad in ("http://ledger.example.com", "ledger.example.com:8080", "bad host", " , "):
        with pytest.raises(ConfigError, match="FLOWLEDGER_RECEIVER_ALLOWED_HOSTS"):
            parse_allowed_hosts(bad)


def test_serve_on_all_interfaces_answers_any_name_and_refuses_a_bad_setting(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "flowledger", "serve", "--db", str(tmp_path / "x.db"), "--port", "0"],
        env={"PATH": "/usr/bin:/bin", "FLOWLEDGER_RECEIVER_ALLOWED_HOSTS": "http://x"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "FLOWLEDGER_RECEIVER_ALLOWED_HOSTS[0]='http://x'" in refused.stderr
