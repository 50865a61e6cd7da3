"""``GET /api/sampling``: the runs the SDK dropped by sampling, per workflow, beside the runs it kept."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError
from flowledger.receiver._params import QueryParams
from flowledger.receiver._state import error_response, project_of, receiver_of

__all__ = ["ROUTES"]


async def sampling(request: Request) -> Response:
    """``{"workflows": [{"workflow_id", "runs_sampled_out"}]}``, by workflow id (the caller's project only)."""
    try:
        QueryParams(request, blank_is_absent=False).expect(())
    except QueryParamError as exc:
        return error_response(400, str(exc))
    counts = await receiver_of(request).store.sampled_out(project=project_of(request))
    return JSONResponse({"workflows": [{"workflow_id": w, "runs_sampled_out": n} for w, n in sorted(counts.items())]})


ROUTES: Final = [Route("/api/sampling", sampling, methods=["GET"])]
