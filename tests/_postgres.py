"""A throwaway PostgreSQL cluster for the tests: Debian's binaries, a temp data folder, a free local port.

``initdb`` refuses to run as root, so as root the cluster is made and run by
the ``postgres`` system user (its data folder owned by that user). Trust
authentication on 127.0.0.1 only; the cluster keeps nothing after the block.

``python3 tasks.py test`` installs Debian's ``postgresql`` with apt when it
runs as root and the binaries are missing, and sets ``FLOWLEDGER_REQUIRE_POSTGRES=1``:
then a cluster that cannot be started fails the tests instead of skipping them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

__all__ = ["POSTGRES_MISSING", "REQUIRE_ENV", "free_port", "postgres_bindir", "postgres_cluster", "postgres_required"]

START_TIMEOUT_S: Final = 60.0
REQUIRE_ENV: Final = "FLOWLEDGER_REQUIRE_POSTGRES"
POSTGRES_MISSING: Final = (
    "PostgreSQL's server binaries are not installed (python3 tasks.py test installs Debian's postgresql as root)"
)
_SYSTEM_USER: Final = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_required() -> bool:
    """Whether a missing or broken PostgreSQL must fail the tests (CI) rather than skip them."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def postgres_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: ``pg_config --bindir``, else Debian's newest version folder."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    candidates += [Path(p) for p in versions]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _as_owner(args: list[str]) -> list[str]:
    """``args`` run as the ``postgres`` system user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", _SYSTEM_USER, "--", *args]


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A running PostgreSQL on a free 127.0.0.1 port; yields the URL of its ``postgres`` database."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError(POSTGRES_MISSING)
    root = Path(tempfile.mkdtemp(prefix="flowledger-pg-"))
    data, sockets = root / "data", root / "run"
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    try:  # from here on, whatever fails (initdb, start, a timeout) stops the server and removes the folder
        sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(root, user=_SYSTEM_USER)
            shutil.chown(sockets, user=_SYSTEM_USER)
            root.chmod(0o700)
        port = free_port()
        user = _SYSTEM_USER if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        subprocess.run(
            _as_owner(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            env=env,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
        )
        subprocess.run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]),
            check=True,
            capture_output=True,
            env=env,
            timeout=START_TIMEOUT_S,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start listening") from None
                time.sleep(0.05)
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            env=env,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
