"""A streamed answer that a store failure part way ends without its final chunk.

Exports and run proofs are streamed as they are read, so their status line
is sent before the store has read everything. A :class:`StoreError` after
that cannot become an error status: the body is left unfinished (no final
chunk, the connection closed), so the client sees it incomplete rather than
a short answer that looks whole, and the log says which answer it was.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Send

from flowledger._exceptions import StoreError

__all__ = ["CutOnStoreError"]

_log = logging.getLogger("flowledger.receiver")


class CutOnStoreError(StreamingResponse):
    """A stream that a StoreError ends without its final chunk; ``what`` names the answer in the log line."""

    def __init__(self, content: AsyncIterable[Any], *, what: str, media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self.what = what

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                body = chunk if isinstance(chunk, bytes | memoryview) else chunk.encode(self.charset)
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except StoreError as exc:  # the server closes the connection after this, the body unfinished
            _log.warning("%s stopped part way, its body cut short: %s", self.what, exc)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
