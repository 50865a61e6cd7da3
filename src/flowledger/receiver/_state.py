"""What every route reaches through ``request.app.state.receiver``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from flowledger.receiver._auth import PROJECT_SCOPE_KEY, ApiKeys
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._writer import Writer
from flowledger.receiver.store._protocol import Store

__all__ = ["ReceiverState", "error_response", "project_of", "receiver_of"]


@dataclass(slots=True)
class ReceiverState:
    """The receiver's parts, built by the app factory."""

    config: ReceiverConfig
    store: Store
    writer: Writer
    metrics: Metrics
    keys: ApiKeys


def receiver_of(request: Request) -> ReceiverState:
    """The receiver serving ``request``."""
    state: ReceiverState = request.app.state.receiver
    return state


def project_of(request: Request) -> str | None:
    """The project the request's API key is bound to (None when keys are off)."""
    project: str | None = request.scope.get(PROJECT_SCOPE_KEY)
    return project


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body every route uses: ``{"error": "..."}``."""
    body: dict[str, Any] = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)
