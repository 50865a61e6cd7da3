"""The JSONL sink: events appended to a local file, one JSON object per line.

For machines that cannot reach a receiver: the file is later loaded with
``flowledger import FILE`` (exactly once: the receiver stores each
``event_id`` once). It is the :class:`~._sender.Sender` with the file as its
destination, so the queue, batching, spool and bounded exit are the same:

- **Append, whole lines.** Each batch is encoded to lines first, then
  written with one ``O_APPEND`` write loop while holding an exclusive
  ``flock`` on the file, so batches of several threads, processes or forked
  children never interleave. The file is opened for each batch (never an
  inherited descriptor, so fork needs nothing special). Should a process
  have died in the middle of a line, the next writer starts on a new line,
  and ``flowledger import`` reports the torn line as rejected.
- **fsync.** ``jsonl_fsync="batch"`` (the default) calls ``fsync`` after each
  batch, so a batch counted as sent survives a crash or power cut; batches
  are at most ``batch_max_age_s`` apart under load, so this costs one fsync
  per batch, not per event. ``"never"`` leaves it to the operating system.
- **Bounded.** The file never grows past ``jsonl_max_bytes``. The lines
  that do not fit (or a file that cannot be written: disk full, permissions)
  goes to the sink's spool, exactly as when the receiver is down, and is
  written once the file has room again (after it was imported and moved
  away), on the periodic probe or the next ``flush()``.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from flowledger.instrument._config import FsyncPolicy, Settings
from flowledger.instrument.delivery._counters import DropReason
from flowledger.instrument.delivery._sender import Sender
from flowledger.instrument.delivery._spool import Destination, encodable, encode_event

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: batches are still written whole by one write loop
    fcntl = None  # type: ignore[assignment]

__all__ = ["JsonlSender", "JsonlWriteResult", "append_lines"]

FILE_MODE: Final = 0o600
"""Events hold captured inputs and outputs: the file is its owner's only (when this sink creates it)."""


@dataclass(frozen=True, slots=True)
class JsonlWriteResult:
    """What became of one append: how many lines were written, and why not all (full, or an OS error)."""

    written: int
    full: bool = False
    error: OSError | None = None


def append_lines(path: Path, lines: list[bytes], *, max_bytes: int, fsync: FsyncPolicy) -> JsonlWriteResult:
    """Append whole ``lines`` (each ending in a newline) to ``path`` under an exclusive lock.

    Only the lines that keep the file within ``max_bytes`` are written (the
    first ones); the result says how many.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), FILE_MODE)
    except OSError as exc:
        return JsonlWriteResult(0, error=exc)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        prefix = b"" if not size or _ends_with_newline(path, size) else b"\n"  # a writer died mid-line
        room = max_bytes - size - len(prefix)
        count = 0
        for line in lines:
            if len(line) > room:
                break
            room -= len(line)
            count += 1
        if count:
            data = prefix + b"".join(lines[:count])
            view = memoryview(data)
            while view:
                done = os.write(fd, view)
                view = view[done:]
            if fsync is FsyncPolicy.BATCH:
                os.fsync(fd)
        return JsonlWriteResult(count, full=count < len(lines))
    except OSError as exc:
        return JsonlWriteResult(0, full=exc.errno in (errno.ENOSPC, errno.EFBIG), error=exc)
    finally:
        os.close(fd)  # also releases the lock


def _ends_with_newline(path: Path, size: int) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(size - 1)
            return fh.read(1) == b"\n"
    except OSError:
        return True


class JsonlSender(Sender):
    """A :class:`Sender` whose destination is a local JSONL file. Implements ``EventSink``."""

    def __init__(self, settings: Settings, path: Path, *, spool_dir: Path | None = None) -> None:
        self.path = Path(path)
        super().__init__(settings, spool_dir=spool_dir)

    def _destination(self) -> Destination | None:
        """None: the spool folder is this file's alone (``sink_spool_dir``), and a file takes no credentials."""
        return None

    def _deliver(self, events: list[dict[str, Any]], retries: int) -> list[dict[str, Any]]:
        """Append every event as one line; return the events the file could not take (they are spooled)."""
        if not events:
            return []
        with self._lock:
            if self._outage.down and not self._outage.probe_due(time.monotonic()):
                return events
        lines, kept = self._lines(events)
        if not kept:
            return []
        result = append_lines(
            self.path, lines, max_bytes=self._settings.jsonl_max_bytes, fsync=self._settings.jsonl_fsync
        )
        if result.written:
            self._delivered(result.written)
        if result.written == len(kept):
            return []
        if result.full:
            self._log_once(
                "jsonl-full",
                "flowledger: %s has reached its size cap; events wait in the spool %s until it has room "
                "(import it with `flowledger import` and move it away).",
                self.path,
                self._spool.directory,
            )
        else:
            self._log_once(
                "jsonl-error",
                "flowledger: cannot append to %s (%r); events wait in the spool.",
                self.path,
                result.error,
            )
        self._mark_down()
        return kept[result.written :]

    def _lines(self, events: list[dict[str, Any]]) -> tuple[list[bytes], list[dict[str, Any]]]:
        lines: list[bytes] = []
        kept: list[dict[str, Any]] = []
        for event in events:
            try:
                line = encode_event(event)
            except (TypeError, ValueError):  # cleaned as the receiver sink cleans it (a lone surrogate: U+FFFD)
                cleaned = encodable(event)
                if cleaned is None:
                    self._drop(DropReason.UNSERIALIZABLE, 1)
                    continue
                event, line = cleaned, encode_event(cleaned)
            lines.append(line + b"\n")
            kept.append(event)
        return lines, kept
