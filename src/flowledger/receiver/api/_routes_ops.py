"""Operations: ``/healthz``, ``/metrics``, ``/openapi.json``, ``/api/verify``, ``/api/rebuild``."""

from __future__ import annotations

import dataclasses
import time
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError
from flowledger.receiver._params import QueryParams, refuse_params
from flowledger.receiver._state import error_response, project_of, receiver_of
from flowledger.receiver.api._openapi import openapi_document
from flowledger.receiver.store._protocol import Drift
from flowledger.receiver.store._time import ts_from_epoch_s
from flowledger.receiver.store._verify import parse_checkpoint

__all__ = ["ROUTES"]

_PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    if refused := refuse_params(request):
        return error_response(400, refused)
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    """Counters, queue depth, commit latency, runs by status, events lost in transit.

    With API keys on, the store's figures are the caller's project only (see ``receiver/_metrics.py``).
    """
    if refused := refuse_params(request):
        return error_response(400, refused)
    receiver = receiver_of(request)
    silent_before = ts_from_epoch_s(time.time() - receiver.config.stuck_after_s)
    project = project_of(request)
    stats = await receiver.store.stats(project=project, silent_before=silent_before)
    sampled_out = await receiver.store.sampled_out(project=project)
    text = receiver.metrics.render(stats, receiver.writer.depth, project=project, sampled_out=sampled_out)
    return PlainTextResponse(text, media_type=_PROMETHEUS_TEXT)


async def openapi(request: Request) -> Response:
    """This API's OpenAPI description."""
    if refused := refuse_params(request):
        return error_response(400, refused)
    return JSONResponse(openapi_document())


async def verify(request: Request) -> Response:
    """Walk the hash chain and report the first bad event; ``?checkpoint=SEQ:HASH`` also checks saved heads."""
    try:
        params = QueryParams(request)
        params.expect(("checkpoint",))
        checkpoints = [parse_checkpoint(text) for text in params.texts("checkpoint")]
    except (ValueError, QueryParamError) as exc:
        return error_response(400, str(exc))
    report = await receiver_of(request).store.verify(checkpoints)
    return JSONResponse(dataclasses.asdict(report))


async def rebuild(request: Request) -> Response:
    """Refold the projections from the ledger (on the writer) and report the drift."""
    if refused := refuse_params(request):
        return error_response(400, refused)
    receiver = receiver_of(request)
    drift: Drift = await receiver.writer.call(receiver.store.rebuild)
    return JSONResponse(drift.as_json())


ROUTES: Final = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/api/verify", verify, methods=["GET"]),
    Route("/api/rebuild", rebuild, methods=["POST"]),
]
