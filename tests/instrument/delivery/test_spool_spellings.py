"""A spool's tag names the receiver, not the way its URL is written: spellings of one endpoint share a tag (so a
process replays what an earlier one spooled under another spelling), and a process that finds batches bound
elsewhere says once how many wait for another destination or API key, without naming either."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowledger.instrument._config import SinkKind, SinkSpec
from flowledger.instrument.delivery._build import sink_spool_dir
from flowledger.instrument.delivery._otlp_sink import OtlpSender
from flowledger.instrument.delivery._sender import Sender
from flowledger.instrument.delivery._spool import Spool
from tests.instrument.delivery._sender_support import child_env, make_settings, recorder

CHILD_TIMEOUT_S = 60.0
OTHER_KEY = "tok-other-0123456789abcdef"

SAME_RECEIVER = [
    "http://receiver:4318",
    "HTTP://Receiver:4318",
    "http://RECEIVER:4318/",
    "http://receiver:4318/.",
    "http://receiver:4318/./",
    "http://receiver:04318",
]
SAME_DEFAULT_PORT = ["http://receiver", "http://receiver:80", "Http://Receiver:80/", "http://receiver/base/.."]
SAME_HTTPS = ["https://receiver.example/base", "https://Receiver.Example:443/base/", "https://receiver.example/./base"]


@pytest.mark.parametrize("spellings", [SAME_RECEIVER, SAME_DEFAULT_PORT, SAME_HTTPS])
@pytest.mark.parametrize("sink", [Sender, OtlpSender])
def test_spellings_of_one_endpoint_share_a_tag(tmp_path: Path, spellings: list[str], sink: type[Sender]) -> None:
    """Case of scheme and host, a default port, `.` segments and a trailing slash do not change a sink's tag."""
    tags = {sink(make_settings(tmp_path, endpoint))._spool.tag for endpoint in spellings}
    assert len(tags) == 1
    assert None not in tags
    if sink is OtlpSender:  # and one folder: a sink only ever looks in its own
        otlp = SinkSpec(SinkKind.OTLP)
        folders = {sink_spool_dir(make_settings(tmp_path, "http://r", otlp_traces_endpoint=e), otlp) for e in spellings}
        assert len(folders) == 1


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("http://receiver:4318", "http://receiver:4319"),
        ("http://receiver:4318", "https://receiver:4318"),
        ("http://receiver:443", "https://receiver"),
        ("http://receiver:4318/a", "http://receiver:4318/A"),
        ("http://receiver:4318/?token=A", "http://receiver:4318/?token=a"),
        ("http://alice:pw@receiver:4318", "http://Alice:pw@receiver:4318"),
    ],
)
@pytest.mark.parametrize("sink", [Sender, OtlpSender])
def test_other_endpoints_keep_their_own_tags(tmp_path: Path, one: str, other: str, sink: type[Sender]) -> None:
    """Port, scheme, path case, query and userinfo are the receiver's or the credentials': they still tell tags
    apart."""
    assert sink(make_settings(tmp_path, one))._spool.tag != sink(make_settings(tmp_path, other))._spool.tag


_CHILD = """
import flowledger

for _ in range(2):
    with flowledger.run("here"):
        pass
    print(flowledger.flush(timeout_s=10.0))
    flowledger.configure()  # a new sender, which lists the folder again
"""


def test_batches_bound_elsewhere_are_counted_once_without_naming_where(tmp_path: Path) -> None:
    """Three batches spooled for another API key wait; a process sending with its own key (two senders, each
    replaying) logs one line with their count, naming neither the key nor the URL, and leaves them."""
    spool_dir = tmp_path / "spool"
    with recorder() as rec:
        theirs = Sender(make_settings(spool_dir, rec.url, api_key=OTHER_KEY))._spool
        for _ in range(3):
            theirs.write([{"event_id": "e", "kind": "k", "data": {}}])
        script = tmp_path / "child.py"
        script.write_text(_CHILD)
        env = child_env(FLOWLEDGER_ENDPOINT=rec.url, FLOWLEDGER_EXPORT_SPANS="0", FLOWLEDGER_SPOOL_DIR=str(spool_dir))
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
        )
    assert done.stdout.split() == ["True", "True"], done.stderr
    lines = [line for line in done.stderr.splitlines() if "another destination" in line]
    assert lines == [
        f"flowledger: 3 spooled batch(es) in {spool_dir} wait for another destination or API key (the endpoint or "
        "key changed?): only a process sending there, with that key, replays them."
    ], done.stderr
    assert OTHER_KEY not in done.stderr
    assert rec.url.partition("://")[2] not in done.stderr
    assert len(Spool(spool_dir, 10_000_000, tag=theirs.tag).ready_names()) == 3
