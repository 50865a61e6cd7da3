"""Periodic signed checkpoints, written by the receiver outside its database.

With ``checkpoint_dir`` and ``checkpoint_key`` set, every
``checkpoint_interval_s`` (and once more at shutdown) the receiver signs the
ledger's Merkle tree head (C2SP tlog-checkpoint in a signed note, see
:mod:`flowledger.receiver.store._checkpoint`) when the ledger grew, writes it
to ``checkpoint-<size>.txt`` and ``latest.txt`` in that directory, and, with
``checkpoint_url`` set, POSTs it there. Later, ``flowledger verify
--checkpoint FILE --key FILE.pub`` proves the database still extends it: a
rolled-back, truncated or rewritten database is caught. A failed write or
post is logged and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Final

import httpx

from flowledger._exceptions import ConfigError, KeyFileError
from flowledger._wire import format_ts
from flowledger.receiver._config import ReceiverConfig, shown_url
from flowledger.receiver.store._checkpoint import Checkpoint, SignerKey, sign_checkpoint
from flowledger.receiver.store._protocol import Store

__all__ = ["LATEST_NAME", "Checkpointer", "check_checkpoint_settings"]

_log = logging.getLogger("flowledger.receiver")
LATEST_NAME: Final = "latest.txt"
_POST_TIMEOUT_S: Final = 10.0


def _signer_key(path: Path) -> SignerKey:
    """The signing key in ``path``; ConfigError (one line, never the file's contents) when it cannot be used."""
    try:
        return SignerKey.parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"the checkpoint key {path} cannot be read: {reason.lower()}") from None
    except (UnicodeDecodeError, KeyFileError):
        raise ConfigError(f"the checkpoint key {path} is not a signing key; write one with flowledger keygen") from None


def _check_dir(path: Path) -> None:
    """ConfigError unless ``path`` is a directory or can be made one (its nearest existing parent is one)."""
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"the checkpoint directory {path} is not a directory")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"the checkpoint directory {path} cannot be made: {parent} is not a directory")


def check_checkpoint_settings(config: ReceiverConfig) -> None:
    """Refuse, before the receiver starts, checkpoint settings it could not use: one of the two set, a key that
    cannot be read or is not a signing key, a directory that is a file or cannot be made."""
    if (config.checkpoint_dir is None) != (config.checkpoint_key is None):
        raise ConfigError(
            "set both FLOWLEDGER_RECEIVER_CHECKPOINT_DIR and FLOWLEDGER_RECEIVER_CHECKPOINT_KEY (or neither)"
        )
    if config.checkpoint_dir is None or config.checkpoint_key is None:
        return
    _signer_key(config.checkpoint_key)
    _check_dir(config.checkpoint_dir)


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


class Checkpointer:
    """Background task writing a signed checkpoint whenever the ledger grew."""

    def __init__(self, store: Store, config: ReceiverConfig) -> None:
        self._store = store
        self._dir = config.checkpoint_dir
        self._key_path = config.checkpoint_key
        self._url = config.checkpoint_url
        self._interval_s = config.checkpoint_interval_s
        self._key: SignerKey | None = None
        self._last_size = -1
        self._task: asyncio.Task[None] | None = None
        if (self._dir is None) != (self._key_path is None):
            raise ConfigError("set both checkpoint_dir and checkpoint_key (or neither) to write checkpoints")

    def start(self) -> None:
        """Read the key and start (no-op when checkpoints are off). ConfigError when the key cannot be used."""
        if self._dir is None or self._key_path is None or self._task is not None:
            return
        self._key = _signer_key(self._key_path)
        _check_dir(self._dir)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._key = None
            raise ConfigError(f"the checkpoint directory {self._dir} cannot be made: {exc.strerror}") from None
        if self._interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flowledger-checkpointer")

    async def stop(self) -> None:
        """Stop, writing a last checkpoint; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._key is not None:
            with contextlib.suppress(Exception):
                await self.write_once()

    async def write_once(self) -> Path | None:
        """Write (and post) a checkpoint if the ledger grew since the last one; return its path."""
        if self._key is None or self._dir is None:
            return None
        head = await self._store.tree_head()
        if head.size == self._last_size:
            return None
        checkpoint = Checkpoint(origin=self._key.name, size=head.size, root=head.root, time=format_ts(time.time_ns()))
        text = sign_checkpoint(checkpoint, self._key)
        path = self._dir / f"checkpoint-{head.size}.txt"
        await asyncio.to_thread(_write, path, text)
        await asyncio.to_thread(_write, self._dir / LATEST_NAME, text)
        self._last_size = head.size
        if self._url is not None:
            try:
                async with httpx.AsyncClient(timeout=_POST_TIMEOUT_S) as client:
                    answer = await client.post(self._url, content=text, headers={"content-type": "text/plain"})
                answer.raise_for_status()
            except httpx.HTTPError as exc:  # never the URL as given, nor httpx's text (which holds it)
                reason = (
                    f"answered {exc.response.status_code}"
                    if isinstance(exc, httpx.HTTPStatusError)
                    else type(exc).__name__
                )
                _log.warning("posting checkpoint %d to %s failed: %s", head.size, shown_url(self._url), reason)
        return path

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.write_once()
            except Exception:  # logged, tried again next interval
                _log.exception("writing a checkpoint failed")
