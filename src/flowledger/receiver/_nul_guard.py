"""Refuse a request whose path or query holds a NUL character, before any route reads it.

No id, filter or name the receiver knows can hold one, and PostgreSQL cannot
even compare text with it (the driver raises): a 400 naming where it was,
the same on every engine, instead of a 500 or a "not found" that depends on
the engine.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from flowledger.receiver._state import error_response

__all__ = ["NulGuardMiddleware"]

_ENCODED_NUL: Final = b"%00"


class NulGuardMiddleware:
    """A 400 for a NUL (raw or ``%00``) in the path or the query string of an HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = None
            if "\x00" in scope["path"]:
                where = "the path"
            elif _ENCODED_NUL in scope["query_string"].lower() or b"\x00" in scope["query_string"]:
                where = "the query string"
            if where is not None:
                await error_response(400, f"{where} holds a NUL character (%00), which no id or filter can")(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)
