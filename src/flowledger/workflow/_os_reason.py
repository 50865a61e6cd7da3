"""The operating system's reason for a failed request, safe to print.

An HTTP client's exception text may quote the URL it was given (with its
password or query token) or a header value it refused; the system's own
words for the socket error below it (``[Errno 111] Connection refused``)
hold neither, so messages name that instead.
"""

from __future__ import annotations

__all__ = ["os_reason"]


def os_reason(exc: BaseException) -> str | None:
    """``[Errno N] text`` of the first operating system error under ``exc`` (its causes, contexts and exception
    groups, breadth first), or None: the number and the system's words only, never its ``filename``."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno is not None and error.strerror:
            return f"[Errno {error.errno}] {error.strerror}"
        if isinstance(error, BaseExceptionGroup):  # one connection attempt per address
            pending.extend(error.exceptions)
        pending.extend(e for e in (error.__cause__, error.__context__) if e is not None)
    return None
