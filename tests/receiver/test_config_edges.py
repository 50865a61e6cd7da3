"""Settings refused at the edge: one line naming the variable, exit 2, before the port is bound; no secret shown."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowledger.receiver._checkpointer import Checkpointer
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.store._sqlite import SqliteStore

_P = "FLOWLEDGER_RECEIVER_"


def _run(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, env=full_env, check=False, cwd=cwd
    )


def _serve(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return _run(["-m", "flowledger", "serve", "--port", "0", "--db", str(tmp_path / "x.db"), *extra], env, tmp_path)


def _refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or lines[-1].startswith("Error: Invalid value"), result.stderr
    assert "Traceback" not in result.stderr
    assert "receiver on" not in result.stderr
    for word in words:
        assert word in result.stderr


@pytest.fixture
def key(tmp_path: Path) -> Path:
    """A signing key written by flowledger keygen."""
    path = tmp_path / "signing.key"
    assert _run(["-m", "flowledger", "keygen", "-o", str(path)]).returncode == 0
    return path


@pytest.mark.parametrize("case", ["missing", "directory", "not-a-key", "dir-is-file", "dir-under-file"])
def test_unusable_checkpoint_settings_are_refused_before_serving(tmp_path: Path, key: Path, case: str) -> None:
    """A checkpoint key that cannot be read or is no key, or a directory that cannot be one, exits 2 at once."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "junk").write_text("junk")
    key_of = {"missing": tmp_path / "nope", "directory": tmp_path, "not-a-key": tmp_path / "junk"}
    dir_of = {"dir-is-file": tmp_path / "afile", "dir-under-file": tmp_path / "afile" / "sub"}
    env = {
        _P + "CHECKPOINT_KEY": str(key_of.get(case, key)),
        _P + "CHECKPOINT_DIR": str(dir_of.get(case, tmp_path / "cp")),
    }
    _refused(_serve(tmp_path, env), "checkpoint")


def test_a_failed_startup_ends_the_process_with_one_line(tmp_path: Path) -> None:
    """A lifespan startup failure closes what opened and exits 1 without a traceback, instead of hanging."""
    code = (
        "from pathlib import Path\n"
        "from flowledger.receiver._config import ReceiverConfig\n"
        "from flowledger.receiver._server import bind_socket, serve\n"
        "from flowledger.receiver.cli._commands import _clean_errors\n"
        "config = ReceiverConfig(db_path=Path('y.db'), checkpoint_dir=Path('cp'), checkpoint_key=Path('nope'))\n"
        "_clean_errors(serve)(config, sock=bind_socket('127.0.0.1', 0))\n"
    )
    result = _run(["-c", code], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: the receiver could not start: the checkpoint key")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("READERS", "99999999999999999999999"),
        ("READERS", "0"),
        ("HEADER_TIMEOUT_S", "nan"),
        ("HEADER_TIMEOUT_S", "0"),
        ("MAX_BODY_BYTES", "-1"),
        ("MAX_INFLATED_BYTES", "-1"),
        ("MAX_BATCH_EVENTS", "0"),
        ("MAX_EVENT_BYTES", "-1"),
        ("MAX_DEPTH", "-1"),
        ("STUCK_AFTER_S", "nan"),
        ("STUCK_AFTER_S", "inf"),
        ("STUCK_AFTER_S", "1e300"),
        ("SWEEP_INTERVAL_S", "nan"),
        ("RECONCILE_INTERVAL_S", "nan"),
        ("SHUTDOWN_S", "abc"),
        ("SHUTDOWN_S", "-1"),
        ("READ_TIMEOUT_S", "-1"),
        ("READ_TIMEOUT_S", "nan"),
        ("READ_TIMEOUT_S", "3601"),
    ],
)
def test_numeric_settings_out_of_range_are_refused(tmp_path: Path, name: str, value: str) -> None:
    """A number that is not finite or not in its setting's range names the variable and the range, exit 2."""
    _refused(_serve(tmp_path, {_P + name: value}), _P + name, " number ")


@pytest.mark.parametrize("command", ["serve", "coverage"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_stuck_after_option_must_be_finite(tmp_path: Path, command: str, value: str) -> None:
    """--stuck-after-s nan or inf is refused by serve and coverage."""
    args = ["-m", "flowledger", command, "--db", str(tmp_path / "x.db"), "--stuck-after-s", value]
    _refused(_run([*args, "--port", "0"] if command == "serve" else args, cwd=tmp_path), "--stuck-after-s")


@pytest.mark.parametrize(
    "policy",
    [
        '{"max_age_s": NaN}',
        '{"max_age_days": Infinity}',
        '{"max_runs_per_workflow": 100000000000000000000000000}',
        '{"max_age_days": true}',
        '{"project": "no spaces", "max_age_days": 1}',
    ],
)
def test_unusable_retention_policies_are_refused(tmp_path: Path, policy: str) -> None:
    """A retention policy that would fail every pass is refused at startup, naming where."""
    _refused(_serve(tmp_path, {_P + "RETENTION": policy}), _P + "RETENTION[0]")


@pytest.mark.parametrize("content", [b"[keys]\n", b"\xff\xfe[keys]\n"])
def test_api_key_files_without_keys_or_not_utf8_are_refused(tmp_path: Path, content: bytes) -> None:
    """An empty [keys] table (auth silently off) or a file that is not UTF-8 is one line naming the file."""
    keys = tmp_path / "keys.toml"
    keys.write_bytes(content)
    _refused(_serve(tmp_path, {}, "--api-keys", str(keys)), str(keys))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (_P + "FORWARD_HEADERS", "x-api-key:HDRSECRET123"),
        (_P + "FORWARD_ENDPOINT", "ftp://user:HDRSECRET123@host"),
        ("FLOWLEDGER_RESUME_ENDPOINTS", "wf=ftp://user:HDRSECRET123@host"),
        (_P + "CHECKPOINT_URL", "ftp://user:HDRSECRET123@host/?token=HDRSECRET123"),
        (_P + "CHECKPOINT_URL", "not a url HDRSECRET123"),
    ],
)
def test_bad_secret_settings_never_show_the_secret(tmp_path: Path, name: str, value: str) -> None:
    """An error about a header or URL names the variable and never shows a header value or a password."""
    result = _serve(tmp_path, {name: value})
    _refused(result, name)
    assert "HDRSECRET123" not in result.stderr


def test_a_failed_checkpoint_post_logs_no_secret(
    tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed checkpoint POST logs the URL without its user part and query values."""

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    real = httpx.AsyncClient

    def client(**kwargs: Any) -> httpx.AsyncClient:
        return real(transport=httpx.MockTransport(refuse), **kwargs)

    monkeypatch.setattr(httpx, "AsyncClient", client)

    async def post_once() -> None:
        store = SqliteStore(tmp_path / "z.db")
        await store.open()
        checkpointer = Checkpointer(store, config)
        checkpointer.start()
        await checkpointer.write_once()
        await store.close()

    config = ReceiverConfig(
        checkpoint_dir=tmp_path / "cp",
        checkpoint_key=key,
        checkpoint_url="https://user:PWSECRET@host/cp?token=TOKSECRET",
        checkpoint_interval_s=0,
    )
    with caplog.at_level(logging.WARNING, logger="flowledger.receiver"):
        asyncio.run(post_once())
    assert "posting checkpoint" in caplog.text
    assert "PWSECRET" not in caplog.text
    assert "TOKSECRET" not in caplog.text
