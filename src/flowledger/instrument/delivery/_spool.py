"""The on-disk spool: batches the receiver could not take wait here.

Layout of the spool folder::

    <id>.<tag>.json.gz                    a ready batch: gzip of {"events": [...]}
    <id>.json.gz                          the same, of a spool without a tag (or an older version's)
    <id>.<tag>.json.gz.claimed-<pid>-<token>  a batch one process is replaying
    .tmp-<pid>-<id>                       a batch being written
    rejected/<event id>.json              one event the receiver found too large
    corrupt/<name>                        a file that could not be read

``<id>`` is a UUIDv7, so names sort by the time they were written and
batches replay oldest first. ``<tag>`` says where the batch was bound: a
digest of the destination and the credentials it was to be sent with
(:func:`destination_tag`), so a process replays only batches meant for where
it sends, with the key it sends: two services sharing the default folder
(another receiver, another project's API key) never deliver each other's
records. The URL in the digest is :func:`canonical_url`: one spelling per
receiver (``HTTP://Receiver:80/./`` is ``http://receiver``), so a process
whose endpoint is written another way still replays what an earlier one
spooled. Batches bound elsewhere are counted as the folder is listed
(:attr:`Spool.bound_elsewhere`), so the sender can say why they stay.
Batches without a tag (written before tags existed) are replayed by
any process, as they always were. Every write goes to a temporary name and is
renamed into place, so a reader never sees half a batch. A replaying
process claims a file by renaming it to a name carrying its pid and a
per-process token: a rename succeeds for exactly one process, so two
processes never send the same file. A claim whose process is gone (killed,
or an earlier process that had the same pid) is renamed back and replayed.
The folder never grows past ``max_bytes``: a batch that does not fit is
refused and the caller counts it. The folder is measured once per process
(one scan), then a running total follows this process's writes and
deletions; a batch the total says does not fit triggers a fresh scan (at
most every few seconds), so that files other processes replayed meanwhile
make room again. What other processes write in the meantime is not seen
until then, so several processes sharing one folder can together take it
a little past its cap.

The spool also estimates how long writing a batch takes (from the writes it
has timed), so that an exit can keep just enough of its time for the spool.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import json
import os
import secrets
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson

from flowledger._wire import new_event_id
from flowledger.instrument.capture import RawJSON, to_jsonable

__all__ = [
    "Claim",
    "Destination",
    "Spool",
    "SpoolResult",
    "canonical_url",
    "destination_tag",
    "encodable",
    "new_batch_name",
]

READY_SUFFIX: Final = ".json.gz"
CLAIM_MARK: Final = ".claimed-"
TMP_PREFIX: Final = ".tmp-"
REJECTED_DIR: Final = "rejected"
CORRUPT_DIR: Final = "corrupt"
TAG_HEX_DIGITS: Final = 16
"""Hex digits of a destination's digest in a batch's name (64 bits: two destinations never share one)."""
CLAIM_STALE_S: Final = 600.0
"""Where a claim's process cannot be checked (not POSIX), a claim this old is taken over."""
_CAN_CHECK_PIDS = os.name == "posix"
PRIVATE_DIR_MODE: Final = 0o700
PRIVATE_FILE_MODE: Final = 0o600
"""Spooled events can hold captured inputs and outputs: only their owner may read them."""
SPOOL_GZIP_LEVEL: Final = 1
"""Fast compression: at exit the spool write is part of the time a process is held."""
RESCAN_MIN_S: Final = 5.0
"""A batch the running total says does not fit rescans the folder, at most this often."""
DEFAULT_WRITE_BYTES_PER_S: Final = 20_000_000
"""Assumed speed of encoding and writing a batch until this process has timed one (a slow machine's)."""
WRITE_RATE_WEIGHT: Final = 0.3
"""Weight of the newest timing in the running estimate of the write speed."""
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
"""A port the scheme implies: written or not, the same receiver."""


class SpoolResult(enum.Enum):
    """What became of a batch handed to :meth:`Spool.write`."""

    WRITTEN = "written"
    FULL = "full"
    """Writing it would take the spool past its size cap; nothing was written."""
    ERROR = "error"
    """The file system refused (permissions, disk full); nothing was written."""
    UNENCODABLE = "unencodable"
    """An event holds a value JSON cannot carry (see :func:`encodable`); nothing was written."""


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (POSIX only: elsewhere signal 0 would terminate it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def _claim_abandoned(path: Path, pid: int) -> bool:
    """Whether another process's claim is abandoned: its process is gone (POSIX), or it is old (elsewhere)."""
    if _CAN_CHECK_PIDS:
        return not _pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > CLAIM_STALE_S
    except OSError:
        return False


def _fragment(value: object) -> Any:
    if type(value) is RawJSON:
        return orjson.Fragment(value.raw())
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def new_batch_name(tag: str | None = None) -> str:
    """A fresh name for a spool file of ``tag`` (see the module); names sort by the time they were made."""
    return f"{new_event_id()}.{tag}{READY_SUFFIX}" if tag else new_event_id() + READY_SUFFIX


class Destination(NamedTuple):
    """Where a sink's batches are bound: the URL they are posted to and the credentials they go with (an API key,
    an OTLP backend's headers) as one text."""

    url: str
    credentials: str


def canonical_url(url: str) -> str:
    """``url`` written the one way the tag hashes it: scheme and host lowercased, the scheme's default port
    dropped, ``.`` and ``..`` segments resolved and a trailing slash removed from the path (as httpx sends it),
    the fragment (never sent) dropped. Userinfo, the path's case and the query stay as written: they may be
    what tells one receiver, project or token from another. A text that does not parse is returned as it is.

    ``HTTP://Receiver:80/./v1/events`` is ``http://receiver/v1/events``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    userinfo, at, _ = parts.netloc.rpartition("@")
    host = parts.hostname or ""  # lowercased; an IPv6 literal without its brackets
    if ":" in host:
        host = f"[{host}]"
    port_text = "" if port is None or port == DEFAULT_PORTS.get(scheme) else f":{port}"
    path = _without_dot_segments(parts.path).rstrip("/")
    query = "?" + parts.query if parts.query else ""
    return f"{scheme}://{userinfo}{at}{host}{port_text}{path}{query}"


def _without_dot_segments(path: str) -> str:
    """``path`` with its ``.`` segments removed and each ``..`` taking the segment before it (RFC 3986 5.2.4)."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(kept) > 1:  # the first, empty, segment is the root
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    return "/".join(kept)


def destination_tag(destination: Destination | None) -> str | None:
    """The tag of batches bound for ``destination``: a digest of its URL (:func:`canonical_url`) and credentials,
    so neither shows in a file name; None (no tag) for a sink whose folder is its destination's alone."""
    if destination is None:
        return None
    text = f"{canonical_url(destination.url)}\n{destination.credentials}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:TAG_HEX_DIGITS]


def _tag_of(name: str) -> str | None:
    """The tag in a ready batch's name, None for an untagged one."""
    stem = name[: -len(READY_SUFFIX)]
    _, dot, tag = stem.partition(".")
    return tag if dot else None


def encode_batch(events: list[dict[str, Any]]) -> bytes:
    """Encode events as the body of ``POST /v1/events`` (JSON, not yet compressed).

    One orjson call for the whole batch; captured payloads (already JSON
    text) are spliced in as they are. Raises TypeError when an event holds
    a value that is not JSON (the caller then finds which). A NaN or
    infinity outside a captured payload (where capture marks it) is
    written as ``null``, as JSON has no such number.
    """
    return orjson.dumps({"events": events}, default=_fragment)


def encode_event(event: dict[str, Any]) -> bytes:
    """Encode one event as one line of JSON (no newline), as the JSONL sink writes it."""
    return orjson.dumps(event, default=_fragment)


def encodable(event: dict[str, Any]) -> dict[str, Any] | None:
    """``event`` if it encodes; else its copy made JSON-safe as the SDK captures values; None if that fails too.

    The one cleaning path of every sink that writes events as JSON (the receiver, the JSONL file, the
    spool): a value that reached an event without going through capture (an object, a lone surrogate,
    NaN, a 65-bit integer...) goes out as its capture marker (a lone surrogate as U+FFFD) rather than
    the event being dropped, so every sink keeps such an event, and keeps it the same way.
    """
    try:
        encode_event(event)
        return event
    except (TypeError, ValueError):
        pass
    try:
        cleaned = to_jsonable(event)
        encode_event(cleaned)
    except Exception:  # a __repr__ that raises, say: telemetry never breaks its host, the event is dropped
        return None
    return cleaned if isinstance(cleaned, dict) else None


def decode_spooled_batch(data: bytes) -> list[dict[str, Any]]:
    """Decode a spooled batch; raise ValueError when it is not one."""
    try:
        doc = json.loads(gzip.decompress(data))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a gzip-compressed JSON batch: {exc}") from exc
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError('not a batch: expected an object {"events": [objects]}')
    return events


_process_token = secrets.token_hex(4)
"""Tells this process's claims from those of an earlier process that had the same pid."""


def _new_process_token() -> None:
    global _process_token
    _process_token = secrets.token_hex(4)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_process_token)


class Claim:
    """One spooled batch this process has claimed for replay."""

    __slots__ = ("_claimed", "_ready", "_size", "_spool", "events")

    def __init__(self, spool: Spool, claimed: Path, ready: Path, events: list[dict[str, Any]], size: int) -> None:
        self._spool = spool
        self._claimed = claimed
        self._ready = ready
        self._size = size
        self.events = events

    @property
    def name(self) -> str:
        return self._ready.name

    def delete(self) -> None:
        """The batch was delivered: remove it for good."""
        try:
            self._claimed.unlink()
        except FileNotFoundError:
            pass
        else:
            self._spool._forget(self._size)

    def release(self) -> None:
        """The batch could not be delivered: put it back, under its original name."""
        try:
            os.replace(self._claimed, self._ready)
        except FileNotFoundError:
            pass


class Spool:
    """A folder of undelivered batches, capped in bytes, shared safely by processes."""

    def __init__(self, directory: Path, max_bytes: int, *, tag: str | None = None) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.tag = tag
        """The destination's tag (:func:`destination_tag`): the batches this spool writes and replays."""
        self._lock = threading.Lock()
        self.bound_elsewhere = 0
        """Ready batches of other tags the last :meth:`ready_names` saw: another destination's or API key's."""
        self.corrupt_files = 0
        """How many unreadable files this process moved to ``corrupt/``."""
        self._used: int | None = None
        """Bytes in the folder by this process's count (None: not measured yet)."""
        self._scanned_at = 0.0
        self._write_s_per_byte = 1.0 / DEFAULT_WRITE_BYTES_PER_S

    def reset_after_fork(self) -> None:
        """Give a forked child its own lock (its claim token is renewed for the whole process)."""
        self._lock = threading.Lock()

    # --- size ----------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes the spool folder holds now (ready, claimed, set-aside and corrupt files)."""
        total = 0
        for folder in (self.directory, self.directory / REJECTED_DIR, self.directory / CORRUPT_DIR):
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        try:
                            if entry.is_file(follow_symlinks=False):
                                total += entry.stat(follow_symlinks=False).st_size
                        except OSError:
                            continue
            except OSError:
                continue
        return total

    def measure(self) -> int:
        """Scan the folder once, unless it was measured already; return the bytes it holds by the running total."""
        with self._lock:
            return self._measured()

    def _measured(self) -> int:
        if self._used is None:
            self._rescan()
        assert self._used is not None
        return self._used

    def _rescan(self) -> None:
        self._used = self.size_bytes()
        self._scanned_at = time.monotonic()

    def _forget(self, size: int) -> None:
        """A file of ``size`` bytes left the folder."""
        with self._lock:
            if self._used is not None:
                self._used = max(self._used - size, 0)

    # --- timing --------------------------------------------------------

    def observe_write(self, nbytes: int, seconds: float) -> None:
        """Fold one timing of encoding (and compressing) ``nbytes`` of JSON into the write speed estimate."""
        if nbytes > 0 and seconds > 0:
            sample = seconds / nbytes
            self._write_s_per_byte += WRITE_RATE_WEIGHT * (sample - self._write_s_per_byte)

    def estimated_write_s(self, nbytes: int) -> float:
        """How long writing a batch of about ``nbytes`` of JSON would take, by the timings seen so far."""
        return max(nbytes, 0) * self._write_s_per_byte

    # --- writing -------------------------------------------------------

    def write(self, events: list[dict[str, Any]], *, name: str | None = None) -> SpoolResult:
        """Write one batch atomically, unless it would take the spool past its cap.

        ``name`` (from :func:`new_batch_name`) lets the caller know the file before it appears.
        """
        if not events:
            return SpoolResult.WRITTEN
        started = time.monotonic()
        try:
            text = encode_batch(events)
        except (TypeError, ValueError):
            return SpoolResult.UNENCODABLE
        data = gzip.compress(text, compresslevel=SPOOL_GZIP_LEVEL)
        result = self._place(self.directory, name or self.batch_name(), data)
        self.observe_write(len(text), time.monotonic() - started)
        return result

    def set_aside(self, event: dict[str, Any]) -> SpoolResult:
        """Keep one event the receiver refused as too large in ``rejected/``."""
        try:
            data = encode_batch([event])[len('{"events":[') : -len("]}")]
        except (TypeError, ValueError):
            return SpoolResult.ERROR
        event_id = event.get("event_id")
        name = event_id if isinstance(event_id, str) and event_id.replace("-", "").isalnum() else new_event_id()
        return self._place(self.directory / REJECTED_DIR, f"{name}.json", data)

    def _place(self, folder: Path, name: str, data: bytes) -> SpoolResult:
        with self._lock:
            if self._measured() + len(data) > self.max_bytes:
                if time.monotonic() - self._scanned_at < RESCAN_MIN_S:
                    return SpoolResult.FULL
                self._rescan()  # other processes may have replayed files meanwhile
                if self._measured() + len(data) > self.max_bytes:
                    return SpoolResult.FULL
            tmp = self.directory / f"{TMP_PREFIX}{os.getpid()}-{new_event_id()}"
            try:
                self.directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
                folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), PRIVATE_FILE_MODE)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, folder / name)
            except OSError:
                try:
                    tmp.unlink()
                except OSError:
                    pass
                return SpoolResult.ERROR
            self._used = self._measured() + len(data)
        return SpoolResult.WRITTEN

    # --- replay --------------------------------------------------------

    def ready_names(self) -> list[str]:
        """Names of the batches waiting to be replayed, oldest first.

        Claims left by processes that are gone are put back first, and
        temporary files of such processes are removed.
        """
        try:
            with os.scandir(self.directory) as entries:
                names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
        except OSError:
            return []
        ready: list[str] = []
        for name in names:
            if name.endswith(READY_SUFFIX):
                ready.append(name)
            elif CLAIM_MARK in name:
                original = self._reclaim(name)
                if original is not None:
                    ready.append(original)
            elif name.startswith(TMP_PREFIX):
                self._remove_stale_tmp(name)
        ours = [name for name in ready if self._ours(name)]
        self.bound_elsewhere = len(ready) - len(ours)
        ours.sort()
        return ours

    def batch_name(self) -> str:
        """A fresh name for a batch of this spool (its tag in it)."""
        return new_batch_name(self.tag)

    def _ours(self, name: str) -> bool:
        """Whether this spool replays the ready batch ``name``: one of its tag, or an untagged one."""
        tag = _tag_of(name)
        return tag is None or tag == self.tag

    def _reclaim(self, name: str) -> str | None:
        original, _, owner = name.partition(CLAIM_MARK)
        pid_text, _, token = owner.partition("-")
        try:
            pid = int(pid_text)
        except ValueError:
            pid = -1
        mine = pid == os.getpid()
        if mine and token == _process_token:
            return None  # a claim of this process, in progress
        if not mine and not _claim_abandoned(self.directory / name, pid):
            return None
        try:
            os.replace(self.directory / name, self.directory / original)
        except OSError:
            return None
        return original

    def _remove_stale_tmp(self, name: str) -> None:
        pid_text = name[len(TMP_PREFIX) :].partition("-")[0]
        try:
            pid = int(pid_text)
        except ValueError:
            return
        path = self.directory / name
        if pid != os.getpid() and _claim_abandoned(path, pid):
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError:
                return
            self._forget(size)

    def claim(self, name: str) -> Claim | None:
        """Claim one ready batch; None when another process took it or it was corrupt.

        A file that cannot be decoded is moved to ``corrupt/`` and skipped.
        """
        ready = self.directory / name
        claimed = self.directory / f"{name}{CLAIM_MARK}{os.getpid()}-{_process_token}"
        try:
            os.rename(ready, claimed)
        except OSError:
            return None
        try:
            os.utime(claimed)  # the claim's age, where pids cannot be checked
        except OSError:
            pass
        try:
            data = claimed.read_bytes()
            events = decode_spooled_batch(data)
        except (OSError, ValueError):
            self._move_corrupt(claimed, name)
            return None
        return Claim(self, claimed, ready, events, len(data))

    def _move_corrupt(self, path: Path, name: str) -> None:
        self.corrupt_files += 1
        try:
            (self.directory / CORRUPT_DIR).mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            os.replace(path, self.directory / CORRUPT_DIR / name)
        except OSError:
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError:
                return
            self._forget(size)
