"""``POST /v1/traces`` placeholder until OTLP ingest lands.

The SDK sends its spans to the receiver by default; answering with an empty
OTLP success (``{}`` for JSON, an empty message for protobuf) keeps those
clients quiet. The spans are not stored yet.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["ROUTES"]

_PROTOBUF: Final = "application/x-protobuf"


async def accept_traces(request: Request) -> Response:
    """Answer an OTLP export with an empty success, in the request's own content type."""
    if request.headers.get("content-type", "").startswith(_PROTOBUF):
        return Response(b"", media_type=_PROTOBUF)
    return JSONResponse({})


ROUTES: Final = [Route("/v1/traces", accept_traces, methods=["POST"])]
