"""A failure of the sender, described for a log line without any text that may hold a secret.

The sender's warnings used to print ``repr(exc)``, and some exceptions quote
what the request was built from: httpx encoding a header value
(``UnicodeEncodeError('ascii', 'SECRÉT99', ...)``), h11 refusing one
(``LocalProtocolError("Illegal header value b'SECRET\\nevil'")``), a URL
parser quoting a URL with its password. Headers are checked when the
settings are made (:func:`flowledger._apikey.header_problem`), so these
should not happen; should one happen all the same, its warning still shows
no secret. :func:`described` keeps the text of the failures that come from
the network or the file system, which say what went wrong and quote nothing
the SDK sent, and gives only the type and where it was raised for any other.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Final

__all__ = ["described"]

TEXT_MAX_CHARS: Final = 200
"""A kept text is cut here: a warning is one line."""
_TEXT_KEPT: Final = ("TimeoutException", "NetworkError", "RemoteProtocolError")
"""httpx failures whose text is the socket's or the server's (``[Errno 111] Connection refused``, ``timed out``,
``Server disconnected without sending a response.``). ``LocalProtocolError``, ``InvalidURL`` and the like quote the
request, so they are not here. Named, not imported: the memory sink counts failures too, without httpx."""


def _text_kept(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and type(exc).__module__ == "builtins":  # the system's words, and a file's path
        return True
    httpx = sys.modules.get("httpx")  # not imported: the failure is none of its
    return httpx is not None and isinstance(exc, tuple(getattr(httpx, name) for name in _TEXT_KEPT))


def described(exc: BaseException) -> str:
    """``exc`` for a warning: its type, with its text only when that cannot quote a header, URL or payload."""
    name = type(exc).__name__
    if isinstance(exc, UnicodeError):  # its repr quotes the whole string it could not encode or decode
        encoding = getattr(exc, "encoding", None)
        start = getattr(exc, "start", None)
        where = f" at character {start + 1}" if isinstance(start, int) else ""
        codec = f"the {encoding} codec" if isinstance(encoding, str) else "a codec"
        return f"{name} ({codec} met a character it cannot take{where}; the text is not shown)"
    if _text_kept(exc):
        text = str(exc)
        return f"{name}: {text[:TEXT_MAX_CHARS]}" if text else name
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return f"{name} (its text is not shown)"
    last = frames[-1]
    return f"{name} raised at {os.path.basename(last.filename)}:{last.lineno} in {last.name} (its text is not shown)"
