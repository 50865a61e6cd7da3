"""``POST /v1/events``: batch ingest of wire-format events."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import BodyError, StoreError, WriteQueueFull
from flowledger.receiver._body import read_body
from flowledger.receiver._state import error_response, project_of, receiver_of
from flowledger.receiver._validate import Rejection, prepare_event
from flowledger.receiver.ingest._batch import decode_batch
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._protocol import EventOutcome

__all__ = ["ROUTES"]

BODY_READ_TIMEOUT_S: Final = 30.0
"""A client that takes longer to send its body is answered 408 (no slow-loris hangs)."""


async def ingest_events(request: Request) -> Response:
    """Validate each event, store the valid ones, and report what became of every one."""
    receiver = receiver_of(request)
    limits = receiver.config.limits
    metrics = receiver.metrics
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            body = await read_body(
                request.stream(),
                request.headers.get("content-length"),
                request.headers.get("content-encoding"),
                limits,
            )
        batch = decode_batch(body, limits)
    except BodyError as exc:
        metrics.refused(exc.status)
        return error_response(exc.status, exc.message)
    except ClientDisconnect:
        metrics.refused(499)
        return error_response(400, "the client went away before sending the whole body")
    except TimeoutError:
        metrics.refused(408)
        return error_response(408, f"the body did not arrive within {BODY_READ_TIMEOUT_S:g} s")
    project = project_of(request)
    valid: list[PreparedEvent] = []
    rejected: list[Rejection] = []
    plain_floats = batch.plain_floats
    for index, raw in enumerate(batch.events):
        prepared = prepare_event(raw, index, limits, project, plain_floats=plain_floats)
        if type(prepared) is PreparedEvent:
            valid.append(prepared)
        else:
            assert isinstance(prepared, Rejection)
            rejected.append(prepared)
    accepted = duplicates = conflicts = 0
    if valid:
        try:
            outcomes = await receiver.writer.submit(valid)
        except WriteQueueFull as exc:
            metrics.refused(503)
            retry = str(receiver.config.retry_after_s)
            return error_response(503, f"the receiver is busy ({exc}); retry later", {"Retry-After": retry})
        except StoreError as exc:
            metrics.refused(503)
            retry = str(receiver.config.retry_after_s)
            return error_response(503, f"the store could not take the events: {exc}", {"Retry-After": retry})
        for event, (outcome, reason) in zip(valid, outcomes, strict=True):
            if outcome is EventOutcome.ACCEPTED:
                accepted += 1
            elif outcome is EventOutcome.DUPLICATE:
                duplicates += 1
            else:
                if outcome is EventOutcome.CONFLICT:
                    conflicts += 1
                rejected.append(Rejection(event.index, reason or outcome.value))
        rejected.sort(key=lambda r: r.index)
    metrics.count_events(project, accepted=accepted, duplicates=duplicates, conflicts=conflicts, rejected=len(rejected))
    answer: dict[str, Any] = {
        "accepted": accepted,
        "duplicates": duplicates,
        "conflicts": conflicts,
        "rejected": [r.as_json() for r in rejected],
    }
    return JSONResponse(answer)


ROUTES: Final = [Route("/v1/events", ingest_events, methods=["POST"])]
