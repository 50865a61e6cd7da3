"""The receiver writes signed checkpoints to a directory outside its database, and posts them."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from flowledger._exceptions import ConfigError
from flowledger.receiver._checkpointer import LATEST_NAME, Checkpointer
from flowledger.receiver._config import ReceiverConfig, config_from_env
from flowledger.receiver.cli._commands import verify_command
from flowledger.receiver.cli._lifecycle import keygen_command
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import simple_run, start_receiver


class _Sink(BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        _Sink.received.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def _size(text: str) -> int:
    return int(text.split("\n")[1])


def test_the_receiver_writes_and_posts_checkpoints_the_ledger_extends(tmp_path: Path) -> None:
    """Checkpoints appear as the ledger grows, one more at shutdown; verify --checkpoint passes on each."""
    key = tmp_path / "keys" / "receiver"
    key.parent.mkdir()
    assert CliRunner().invoke(keygen_command, ["-o", str(key)]).exit_code == 0
    _Sink.received.clear()
    sink = HTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    folder = tmp_path / "elsewhere" / "checkpoints"
    config = ReceiverConfig(
        db_path=tmp_path / "db" / "r.db",
        sweep_interval_s=0,
        checkpoint_dir=folder,
        checkpoint_key=key,
        checkpoint_interval_s=0.05,
        checkpoint_url=f"http://127.0.0.1:{sink.server_address[1]}/checkpoints",
    )
    (tmp_path / "db").mkdir()
    live = start_receiver(config)
    try:
        first = simple_run()
        assert live.post(first.events).json()["accepted"] == 4
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            (folder / "checkpoint-4.txt").exists() and any(_size(text) == 4 for text in _Sink.received)
        ):
            time.sleep(0.05)  # written first, then posted: stopping in between would lose the post
        assert (folder / "checkpoint-4.txt").exists()
        assert live.post(simple_run().events).json()["accepted"] == 4
    finally:
        live.stop()
        sink.shutdown()
        sink.server_close()
    latest = (folder / LATEST_NAME).read_text()
    assert _size(latest) == 8
    assert any(_size(text) == 4 for text in _Sink.received)
    for path in (folder / "checkpoint-4.txt", folder / LATEST_NAME):
        result = CliRunner().invoke(
            verify_command, ["--db", str(config.db_path), "--checkpoint", str(path), "--key", f"{key}.pub"]
        )
        assert result.exit_code == 0, result.output


def test_checkpoint_settings_come_from_the_environment(tmp_path: Path) -> None:
    """FLOWLEDGER_RECEIVER_CHECKPOINT_* set the directory, key, URL and interval."""
    config = config_from_env(
        environ={
            "FLOWLEDGER_RECEIVER_CHECKPOINT_DIR": str(tmp_path / "cp"),
            "FLOWLEDGER_RECEIVER_CHECKPOINT_KEY": str(tmp_path / "k"),
            "FLOWLEDGER_RECEIVER_CHECKPOINT_URL": "http://example.invalid/cp",
            "FLOWLEDGER_RECEIVER_CHECKPOINT_INTERVAL_S": "60",
        }
    )
    assert (config.checkpoint_dir, config.checkpoint_key) == (tmp_path / "cp", tmp_path / "k")
    assert config.checkpoint_url == "http://example.invalid/cp"
    assert config.checkpoint_interval_s == 60.0


def test_half_a_checkpoint_setting_is_a_config_error(tmp_path: Path) -> None:
    """A directory without a key (or the reverse) is refused when the receiver is built."""
    store = SqliteStore(tmp_path / "x.db")
    with pytest.raises(ConfigError, match="both"):
        Checkpointer(store, ReceiverConfig(checkpoint_dir=tmp_path))
    with pytest.raises(ConfigError, match="both"):
        Checkpointer(store, ReceiverConfig(checkpoint_key=tmp_path / "k"))
