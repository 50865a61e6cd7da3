"""Capturing what a node attempt logs through Python ``logging``.

One :class:`AttemptLogHandler` sits on the root logger (added once, the first
time an attempt captures logs). For each record that reaches the root's
handlers it looks up the current node attempt through context variables
(``_node.current_node``): the attempt's task or thread, threads started with
:class:`~flowledger.instrument.ContextThreadPoolExecutor` or
:func:`~flowledger.instrument.in_context`, and any library called from
them. A record made outside every attempt is left alone.

The handler never changes what the application's own handlers receive: it
sets no logger's level, touches no propagation, and when no other handler
would have taken a record it hands it to ``logging.lastResort`` exactly as
Python does without any handler. A logger's own level still filters first:
a record that Python never makes cannot be captured.

Per attempt, :class:`AttemptLogBuffer` keeps lines at or above ``log_level`` up to
``log_max_lines`` distinct lines and ``log_max_bytes`` of text, counting what
it drops; identical consecutive records are kept once with ``repeats``, so a
storm of one message costs one line. Messages and exception text are
redacted as captured values are: ``key=value`` and ``key: value`` pairs whose
key looks secret, and bearer tokens, become ``[REDACTED]``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any, Final

from flowledger._wire import REDACTED, format_ts

__all__ = ["LINE_MAX_CHARS", "AttemptLogBuffer", "AttemptLogHandler", "install_handler", "redact_text"]

LINE_MAX_CHARS: Final = 16_384
"""A message or an exception text longer than this is cut (with a marker) before it is kept."""
_CUT_MARKER: Final = " …[cut]"
_RECORD_OVERHEAD: Final = 96
"""Bytes a record adds to its event besides its text (an estimate for the queue's byte bound)."""
EVENT_RECORDS_MAX: Final = 1_000
"""Most records one ``node_logs`` event carries (the wire schema allows 10,000)."""
EVENT_BYTES_MAX: Final = 256 * 1024
"""About how many bytes of records one ``node_logs`` event carries (a record of one line is at most ~130 KB)."""
_OWN_LOGGER: Final = "flowledger"
_OWN_PREFIX: Final = _OWN_LOGGER + "."

_KEY_SEP: Final = re.compile(r"""(?<![\w.-])(?P<key>[\w.-]++)(?P<sep>["']?\s*[:=]\s*)""")
"""A key and its separator; a key is a whole word, so each word is tried once (linear time)."""
_END: Final = r"[)>.:!?]"
"""Closing brackets and punctuation: part of a value inside it, kept as text after it (``(password=x).``)."""
_CORE: Final = r"""[^\s,;&"'}\])>.:!?]"""
_TOKEN: Final = rf"""{_END}*{_CORE}+(?:{_END}+{_CORE}+)*|[^\s,;&"'}}\]]+"""
_VALUE: Final = re.compile(rf"""(?i:bearer|basic)\s+(?:{_TOKEN})|"[^"]*"|'[^']*'|{_TOKEN}""")
_BEARER: Final = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")


def redact_text(text: str, redact: re.Pattern[str] | None) -> str:
    """``text`` with the values of secret-looking ``key=value`` / ``key: value`` pairs and bearer tokens hidden.

    A value ends at a space, ``,;&``, a quote or ``]}``; a closing bracket it did
    not open and a sentence's full stop after it are kept
    (``(password=[REDACTED]).``), while ``!?:`` after it are taken as part of it
    (:func:`_value_end`). The value
    of a harmless key is searched on, as it may hold a pair of its own
    (``url=https://x/?token=[REDACTED]``). A value hidden already
    (``[REDACTED]``, ``***``) is left as it is. Linear in the text's length.
    """
    if redact is None:
        return text
    if "=" in text or ":" in text:
        parts: list[str] = []
        done = 0
        at = 0
        while (pair := _KEY_SEP.search(text, at)) is not None:
            at = pair.end()
            if redact.search(pair.group("key").lower().replace("-", "_")) is None:
                continue
            value = _VALUE.match(text, at)
            if value is None or text.startswith(REDACTED, at) or not value.group().strip("*"):
                continue  # nothing to hide, or hidden already (``[REDACTED]``, a URL's ``***``)
            parts.append(text[done:at])
            parts.append(REDACTED)
            done = at = _value_end(text, value)
        if parts:
            parts.append(text[done:])
            text = "".join(parts)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


_OPENERS: Final = {")": "(", ">": "<"}


def _value_end(text: str, value: re.Match[str]) -> int:
    """Where a secret value matched as ``value`` ends, with what of the punctuation after it belongs to it.

    ``!``, ``?`` and ``:`` after a value are taken as its own (passwords end so); a ``.`` too, unless a space or
    the text's end follows (a sentence's end); a ``)`` or ``>`` only when it closes one the value opened
    (``<hunter2>``), else it closes the text around the pair and stays. A quoted value ends at its quote.
    """
    end = value.end()
    token = value.group()
    if token[:1] in "\"'":
        return end
    while end < len(text):
        char = text[end]
        if char in "!?:":
            pass
        elif char == ".":
            if end + 1 == len(text) or text[end + 1].isspace():
                break
        elif char in _OPENERS:
            taken = text[value.start() : end]
            if taken.count(_OPENERS[char]) <= taken.count(char):  # the value opened none still open
                break
        else:
            break
        end += 1
    return end


def _cut(text: str) -> str:
    return text if len(text) <= LINE_MAX_CHARS else text[:LINE_MAX_CHARS] + _CUT_MARKER


_formatter: Final = logging.Formatter()


class AttemptLogBuffer:
    """The log lines of one node attempt: bounded, deduplicated, safe to add to from several threads."""

    __slots__ = (
        "_last_key",
        "_lock",
        "bytes",
        "dropped_bytes",
        "dropped_lines",
        "max_bytes",
        "max_lines",
        "min_level",
        "records",
        "redact",
    )

    def __init__(self, *, min_level: int, max_lines: int, max_bytes: int, redact: re.Pattern[str] | None) -> None:
        self._lock = threading.Lock()
        self.min_level = min_level
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.redact = redact
        self.records: list[dict[str, Any]] = []
        self.bytes = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self._last_key: tuple[Any, ...] | None = None

    def add(self, record: logging.LogRecord, span_ids: tuple[str, str] | None = None) -> None:
        """Keep ``record`` (or count it as dropped, or as a repeat of the line before)."""
        if record.levelno < self.min_level:
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what the caller wrote
            message = f"{record.msg!r} % {record.args!r}"
        exception = None
        if record.exc_info:
            exception = record.exc_text or _formatter.formatException(record.exc_info)
        if record.stack_info:
            exception = (exception + "\n" if exception else "") + record.stack_info
        key = (record.levelno, record.name, message, exception)
        with self._lock:
            if key == self._last_key and self.records:
                self.records[-1]["repeats"] = self.records[-1].get("repeats", 1) + 1
                return
            size = len(message.encode("utf-8", "replace")) + (
                len(exception.encode("utf-8", "replace")) if exception else 0
            )
            if len(self.records) >= self.max_lines or self.bytes + size > self.max_bytes:
                self.dropped_lines += 1
                self.dropped_bytes += size
                self._last_key = None
                return
            self._last_key = key
            self.bytes += size
            line: dict[str, Any] = {
                "ts": format_ts(int(record.created * 1_000_000_000)),
                "level": record.levelno,
                "level_name": record.levelname[:32],
                "logger": record.name[:256],
                "message": _cut(redact_text(message, self.redact)),
            }
            if exception is not None:
                line["exception"] = _cut(redact_text(exception, self.redact))
            if span_ids is not None:
                line["trace_id"], line["span_id"] = span_ids
            self.records.append(line)

    def take(self) -> list[tuple[dict[str, Any], int]]:
        """The ``node_logs`` fields (records, then drop counts on the last) and their estimated sizes.

        Several when the lines are many: each part holds at most EVENT_RECORDS_MAX records and about
        EVENT_BYTES_MAX bytes, so that no event passes the receiver's per-event limit (1 MiB by default).
        Empty when nothing was logged.
        """
        with self._lock:
            records, self.records = self.records, []
            dropped_lines, dropped_bytes = self.dropped_lines, self.dropped_bytes
            self.bytes = 0
            self._last_key = None
        parts: list[tuple[dict[str, Any], int]] = []
        chunk: list[dict[str, Any]] = []
        size = 0
        for record in records:
            text = record["message"] + (record.get("exception") or "")
            record_size = _RECORD_OVERHEAD + len(text.encode("utf-8", "replace"))
            if chunk and (len(chunk) >= EVENT_RECORDS_MAX or size + record_size > EVENT_BYTES_MAX):
                parts.append(({"records": chunk}, size))
                chunk, size = [], 0
            chunk.append(record)
            size += record_size
        if chunk or dropped_lines:
            parts.append(({"records": chunk}, size))
        if dropped_lines:
            parts[-1][0]["dropped_lines"] = dropped_lines
            parts[-1][0]["dropped_bytes"] = dropped_bytes
        return parts


class AttemptLogHandler(logging.Handler):
    """Routes each record to the current attempt's :class:`AttemptLogBuffer` (see the module's docstring)."""

    def __init__(self, current: Callable[[], tuple[AttemptLogBuffer, tuple[str, str] | None] | None]) -> None:
        super().__init__(logging.NOTSET)
        self._current = current
        self._local = threading.local()

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: AttemptLogBuffer has its own, and a slow lock here would serialise the app's logging.
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        local = self._local
        if getattr(local, "busy", False):  # logging from inside this handler: never recurse
            return
        local.busy = True
        try:
            name = record.name
            if name != _OWN_LOGGER and not name.startswith(_OWN_PREFIX):  # never the SDK's own lines
                found = self._current()
                if found is not None:
                    found[0].add(record, found[1])
            self._last_resort(record)
        except Exception:  # telemetry never breaks its host
            pass
        finally:
            local.busy = False

    def _last_resort(self, record: logging.LogRecord) -> None:
        """Do what Python does when no handler takes a record: this handler must not hide that."""
        resort = logging.lastResort
        if resort is None or record.levelno < resort.level:
            return
        logger: logging.Logger | None = logging.getLogger(record.name) if record.name != "root" else logging.root
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return
            if not logger.propagate:
                break
            logger = logger.parent
        resort.handle(record)


_install_lock: Final = threading.Lock()
_installed: list[AttemptLogHandler] = []


def install_handler(current: Callable[[], tuple[AttemptLogBuffer, tuple[str, str] | None] | None]) -> AttemptLogHandler:
    """Add the handler to the root logger once per process (later calls return it)."""
    if _installed and _installed[0] in logging.root.handlers:  # every attempt asks: no lock when it is there
        return _installed[0]
    with _install_lock:
        if _installed and _installed[0] in logging.root.handlers:
            return _installed[0]
        handler = AttemptLogHandler(current)
        logging.root.addHandler(handler)
        _installed[:] = [handler]
        return handler
