"""In real headless Chromium: a page on another site changes nothing through the browser, and a page whose name
was pointed at the receiver's address (DNS rebinding) reads nothing (see ``receiver/_origin_guard.py``)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.receiver._support import RunEvents, free_socket
from tests.receiver.viewer._support import LiveReceiver
from tests.receiver.viewer.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow

_WAIT_MS = 20_000


def _hostile_page(receiver: str, forged: list[dict[str, Any]]) -> bytes:
    """What a page on another site can send without asking first: text/plain fetches and a text/plain form."""
    events = json.dumps(json.dumps({"events": forged}))
    form_name = '{"workflow_id":"x'
    form_value = '","workflow_id":"victim"}'
    return f"""<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="form" method="POST" action="{receiver}/api/purge" enctype="text/plain" target="sink">
<input name='{form_name}' value='{form_value}'></form>
<script>
const plain = {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}}};
Promise.allSettled([
  fetch("{receiver}/v1/events", {{...plain, body: {events}}}),
  fetch("{receiver}/api/purge", {{...plain, body: '{{"workflow_id": "victim"}}'}}),
  fetch("{receiver}/api/rebuild", plain),
]).then(() => {{
  document.querySelector("iframe").onload = () => {{ document.title = "done"; }};
  document.getElementById("form").submit();
}});
</script></body></html>""".encode()


@pytest.fixture
def hostile_site(live: LiveReceiver) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A page served from another port of 127.0.0.1: another origin, which Chromium calls same-site."""
    forged = RunEvents(workflow_id="forged").start().finish("failed").events
    body = _hostile_page(live.url, forged)

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/", forged
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_site_changes_nothing(
    live: LiveReceiver, chromium: Any, hostile_site: tuple[str, list[dict[str, Any]]]
) -> None:
    victim = RunEvents(workflow_id="victim").start().node("a").finish("succeeded")
    live.post(victim.events)
    page = chromium.new_page()
    try:
        page.goto(hostile_site[0])
        page.wait_for_function("document.title === 'done'", timeout=_WAIT_MS)
    finally:
        page.close()
    assert [run["workflow_id"] for run in live.get("/api/runs").json()["runs"]] == ["victim"]
    assert live.get("/api/verify").json()["events"] == len(victim.events)


def test_a_rebound_name_reads_nothing(live: LiveReceiver, chromium: Any) -> None:
    """Chromium resolving a foreign name to 127.0.0.1 stands in for a rebinding DNS server."""
    run = RunEvents(workflow_id="private").start().finish("succeeded")
    live.post(run.events)
    port = live.url.rsplit(":", 1)[1]
    browser = chromium.browser_type.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.evil.example 127.0.0.1"]
    )
    try:
        page = browser.new_page()
        answer = page.goto(f"http://rebind.evil.example:{port}/")
        assert answer is not None
        assert answer.status == 403
        status = page.evaluate("fetch('/api/runs').then(r => r.status)")
        assert status == 403
        deleted = page.evaluate(f"fetch('/api/runs/{run.run_id}', {{method: 'DELETE'}}).then(r => r.status)")
        assert deleted == 403
    finally:
        browser.close()
    assert [r["workflow_id"] for r in live.get("/api/runs").json()["runs"]] == ["private"]
    assert CHROMIUM.exists()
