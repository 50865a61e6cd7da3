"""Generated workflows run as real subprocesses: one-shot runs and http-triggered servers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from flowledger.codegen import generate
from tests.otel._support import POLL_INTERVAL_S, POLL_TIMEOUT_S, free_port, subprocess_env


def generate_module(tmp_path: Path, name: str, definition: str) -> Path:
    """Write a definition and its generated module ``<name>.py`` into ``tmp_path``."""
    source = tmp_path / f"{name}.yaml"
    source.write_text(textwrap.dedent(definition), encoding="utf-8")
    module = tmp_path / f"{name}.py"
    module.write_text(generate(source, display_name=source.name), encoding="utf-8")
    return module


def run_once(module: Path, payload: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python MODULE --input PAYLOAD`` with the given environment."""
    return subprocess.run(
        [sys.executable, str(module), "--input", payload],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def serving(module: Path, log: Path, **env: str) -> Iterator[str]:
    """``python MODULE --serve`` on a free port; yields its base URL once it accepts connections."""
    port = free_port()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(module), "--serve", "--port", str(port)],
            env=subprocess_env(**env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while True:
            try:
                httpx.get(url + "/", timeout=1.0)
                break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{module.name} did not start serving: {log.read_text()}")
            time.sleep(POLL_INTERVAL_S)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
