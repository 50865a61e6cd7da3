"""The app factory: builds the receiver's ASGI app from its parts.

Routes come from the modules listed in :data:`ROUTE_MODULES`; adding a
feature with its own routes (OTLP ingest, a viewer) is one more entry. A
module may also define ``async def on_shutdown(app)``, awaited when the
receiver stops, before the writer and the store close.

A :class:`StoreUnavailable` a route does not handle itself (the database
down, restarting or locked) is answered 503 with ``Retry-After`` and logged in
one line, never 500 with a traceback; reads answer again once the database is
back. A :class:`QueryTimeout` (a query stopped at ``read_timeout_s``) is answered
503 without ``Retry-After``: asking again would take as long. Any other failure
of the store is a fault: 500, its traceback logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from types import ModuleType

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from flowledger._exceptions import AmbiguousRunError, QueryTimeout, StoreUnavailable
from flowledger.receiver._auth import ApiKeys, AuthMiddleware
from flowledger.receiver._budget import BodyBudget, BodyBudgetMiddleware
from flowledger.receiver._checkpointer import Checkpointer
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._nul_guard import NulGuardMiddleware
from flowledger.receiver._origin_guard import OriginGuardMiddleware, allowed_hosts_for
from flowledger.receiver._reconciler import Reconciler
from flowledger.receiver._retention import Retention
from flowledger.receiver._state import ReceiverState, error_response
from flowledger.receiver._sweeper import Sweeper
from flowledger.receiver._writer import Writer
from flowledger.receiver.api import (
    _routes_analytics,
    _routes_integrity,
    _routes_logs,
    _routes_metrics,
    _routes_ops,
    _routes_purge,
    _routes_query,
    _routes_resume,
    _routes_sampling,
    _routes_tree,
)
from flowledger.receiver.ingest import _routes as _routes_ingest
from flowledger.receiver.otlp import _routes as _routes_traces
from flowledger.receiver.otlp._link import OtlpLogLinker
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.viewer import _routes as _routes_viewer

__all__ = ["ROUTE_MODULES", "create_app"]

_log = logging.getLogger("flowledger.receiver")

ROUTE_MODULES: tuple[ModuleType, ...] = (
    _routes_ingest,
    _routes_query,
    _routes_purge,
    _routes_tree,
    _routes_resume,
    _routes_ops,
    _routes_logs,
    _routes_sampling,
    _routes_traces,
    _routes_viewer,
    _routes_integrity,
    _routes_analytics,
    _routes_metrics,
)
"""Every module whose ``ROUTES`` list the app mounts, in order."""


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _ambiguous_run(request: Request, exc: Exception) -> Response:
    """A run id used in several projects, asked for without a project (API keys off): 409 saying how to choose."""
    return error_response(409, str(exc))


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """The store's database cannot be reached or written now (down, locked, disk full): 503 with Retry-After, one
    log line, no traceback. Any other StoreError is a fault of the store: a 500 with its traceback in the log."""
    receiver: ReceiverState = request.app.state.receiver
    _log.warning("%s %s answered 503: %s", request.method, request.url.path, exc)
    retry = str(receiver.config.retry_after_s)
    return error_response(503, f"the store cannot answer now: {exc}", {"Retry-After": retry})


async def _query_timeout(request: Request, exc: Exception) -> Response:
    """A query stopped at the receiver's limit for one read: 503 naming the limit, one log line, no Retry-After."""
    _log.warning("%s %s answered 503: %s", request.method, request.url.path, exc)
    return error_response(503, f"{exc} (the receiver's limit: FLOWLEDGER_RECEIVER_READ_TIMEOUT_S)")


def _store_of(config: ReceiverConfig) -> Store:
    """The engine the configuration names: PostgreSQL for a ``db_url``, else the SQLite file ``db_path``."""
    if config.db_url is not None:
        from flowledger.receiver.store.postgres import PostgresStore

        return PostgresStore(config.db_url, read_timeout_s=config.read_timeout_s)
    return SqliteStore(config.db_path, readers=config.readers, read_timeout_s=config.read_timeout_s)


def create_app(
    config: ReceiverConfig | None = None,
    *,
    store: Store | None = None,
    route_modules: Sequence[ModuleType] = ROUTE_MODULES,
) -> Starlette:
    """Build the receiver. The store opens, and the writer and sweeper start, in the app's lifespan."""
    config = config or ReceiverConfig()
    the_store: Store = store if store is not None else _store_of(config)
    metrics = Metrics()
    writer = Writer(
        the_store,
        metrics,
        max_requests=config.write_queue_max_requests,
        commit_max_events=config.commit_max_events,
    )
    keys = ApiKeys(config.api_keys)
    sweeper = Sweeper(the_store, writer, config, metrics)
    retention = Retention(the_store, writer, config)
    checkpointer = Checkpointer(the_store, config)
    reconciler = Reconciler(the_store, config, metrics)
    linker = OtlpLogLinker(the_store, writer, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Whatever started is stopped, in the reverse order, also when a later part fails to start: a failed
        # startup ends the process instead of leaving the store and the writer's threads holding it open.
        async with contextlib.AsyncExitStack() as stack:
            await the_store.open()
            stack.push_async_callback(the_store.close)
            for part in (checkpointer, writer, reconciler, retention, linker, sweeper):
                part.start()
                stack.push_async_callback(part.stop)
            for module in reversed(route_modules):  # a feature's own shutdown (e.g. sending queued OTLP forwards)
                on_shutdown = getattr(module, "on_shutdown", None)
                if on_shutdown is not None:
                    stack.push_async_callback(on_shutdown, app)
            if config.grpc_port is not None:  # the grpc extra: imported only when asked for
                from flowledger.receiver.otlp._grpc import GRPC_STOP_GRACE_S, start_grpc

                grpc_server = await start_grpc(app, app.state.receiver)
                stack.push_async_callback(grpc_server.stop, GRPC_STOP_GRACE_S)
            yield

    routes: list[BaseRoute] = [route for module in route_modules for route in module.ROUTES]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                OriginGuardMiddleware, allowed_hosts=allowed_hosts_for(config.listen_host, config.allowed_hosts)
            ),
            Middleware(NulGuardMiddleware),
            Middleware(AuthMiddleware, keys=keys),
            Middleware(
                BodyBudgetMiddleware,
                budget=BodyBudget(config.max_body_bytes_in_flight),
                limits=config.limits,
                metrics=metrics,
                retry_after_s=config.retry_after_s,
            ),
        ],
        exception_handlers={
            HTTPException: _http_error,
            AmbiguousRunError: _ambiguous_run,
            StoreUnavailable: _store_unavailable,
            QueryTimeout: _query_timeout,
        },
        lifespan=lifespan,
    )
    app.state.receiver = ReceiverState(config=config, store=the_store, writer=writer, metrics=metrics, keys=keys)
    return app
