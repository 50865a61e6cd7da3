"""Spooled batches go only where they were bound: two services sharing the default spool folder, with another
receiver or another project's API key, never deliver each other's records (``_spool``: a batch's name carries a
digest of its destination and credentials)."""

from __future__ import annotations

import socket
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from flowledger.instrument.delivery._spool import READY_SUFFIX, Destination, Spool, destination_tag
from tests._serve import serve_process
from tests.instrument.delivery._sender_support import child_env

CHILD_TIMEOUT_S = 60.0
KEYS = {"tok-alpha-0123456789abcdef": "alpha", "tok-beta-0123456789abcdef0": "beta"}

_SCRIPT = """
import sys
import flowledger

with flowledger.run(sys.argv[1]):
    pass
print(flowledger.flush(timeout_s=float(sys.argv[2])))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _receiver(port: int, tmp_path: Path) -> AbstractContextManager[tuple[str, subprocess.Popen[str]]]:
    """``flowledger serve`` on ``port`` with two projects' keys, once it answers."""
    keys = tmp_path / "keys.toml"
    keys.write_text("[keys]\n" + "".join(f'"{key}" = "{project}"\n' for key, project in KEYS.items()))
    return serve_process(["--db", str(tmp_path / "ledger.db"), "--api-keys", str(keys)], child_env(), port=port)


def _record(tmp_path: Path, url: str, key: str, workflow: str, flush_s: float) -> str:
    script = tmp_path / "record.py"
    script.write_text(_SCRIPT)
    env = child_env(
        FLOWLEDGER_ENDPOINT=url,
        FLOWLEDGER_API_KEY=key,
        FLOWLEDGER_SPOOL_DIR=str(tmp_path / "spool"),
        FLOWLEDGER_EXPORT_SPANS="0",
        FLOWLEDGER_EXIT_FLUSH_S="0.2",
    )
    done = subprocess.run(
        [sys.executable, str(script), workflow, str(flush_s)],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _workflows(url: str, key: str) -> list[str]:
    runs = httpx.get(f"{url}/api/runs", headers={"Authorization": f"Bearer {key}"}).json()["runs"]
    return sorted(run["workflow_id"] for run in runs)


def test_a_batch_spooled_under_one_key_is_delivered_only_with_that_key(tmp_path: Path) -> None:
    """Both services spool while the receiver is down; the next process of one of them delivers its own runs and
    leaves the other's, which its own next process delivers, each into its own project."""
    alpha, beta = KEYS
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    assert _record(tmp_path, url, beta, "beta-down", 0.5) == "False"
    assert _record(tmp_path, url, alpha, "alpha-down", 0.5) == "False"
    with _receiver(port, tmp_path):
        assert _record(tmp_path, url, alpha, "alpha-up", 10.0) == "True"
        assert (_workflows(url, alpha), _workflows(url, beta)) == (["alpha-down", "alpha-up"], [])
        assert _record(tmp_path, url, beta, "beta-up", 10.0) == "True"
        assert (_workflows(url, alpha), _workflows(url, beta)) == (["alpha-down", "alpha-up"], ["beta-down", "beta-up"])
    assert not list((tmp_path / "spool").glob(f"*{READY_SUFFIX}"))


def test_a_spool_replays_its_own_tag_and_untagged_batches_only(tmp_path: Path) -> None:
    """Untagged batches (an older version's) are anyone's; a tagged one only its destination's."""
    mine, other = (
        destination_tag(Destination("http://a/v1/events", "key-1")),
        destination_tag(Destination("http://a/v1/events", "key-2")),
    )
    assert mine is not None
    assert other not in (None, mine)
    spool = Spool(tmp_path, 10_000_000, tag=mine)
    theirs = Spool(tmp_path, 10_000_000, tag=other)
    untagged = Spool(tmp_path, 10_000_000)
    for writer in (spool, theirs, untagged):
        writer.write([{"event_id": "e", "kind": "k", "data": {}}])
    assert len(spool.ready_names()) == 2
    assert len(theirs.ready_names()) == 2
    assert len(untagged.ready_names()) == 1
    assert set(spool.ready_names()) & set(theirs.ready_names()) == set(untagged.ready_names())
    assert destination_tag(None) is None
