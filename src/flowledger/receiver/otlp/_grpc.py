"""OTLP over gRPC: the TraceService, LogsService and MetricsService ``Export`` methods (``serve --grpc-port``).

A ``grpc.aio`` server on the receiver's own event loop, started and stopped
with the app's lifespan. It is the same ingest as OTLP/HTTP: each request
is decoded by :func:`~flowledger.receiver.otlp._salvage.decode_export` and
taken by :func:`~flowledger.receiver.otlp._accept.accept`, so validation,
partial success, storage, counters and forwarding are one code. The
methods take the raw request bytes (the services and their names come from
the opentelemetry-proto descriptors) so that a malformed body is answered
``INVALID_ARGUMENT`` with the decoder's sentence rather than gRPC's generic
deserialization error.

Status codes: ``UNAUTHENTICATED`` without a valid ``authorization: Bearer
<key>`` metadata when API keys are on; ``INVALID_ARGUMENT`` for a body that
is not the service's request; ``RESOURCE_EXHAUSTED`` for a message over
``max_inflated_bytes`` (gRPC's own check, after decompression) or more
calls at once than the write queue holds; ``UNAVAILABLE`` (retryable, as the
OTLP specification says) when the store is busy. gRPC's gzip compression is
handled by grpcio.

grpcio comes with the ``grpc`` extra; this module is imported only when a
gRPC port is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
from grpc import aio
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from flowledger._exceptions import OtlpBodyError
from flowledger.receiver._state import ReceiverState
from flowledger.receiver.otlp._accept import Refusal, accept, otlp_state_of
from flowledger.receiver.otlp._decode import OtlpFormat, OtlpSignal, encode_response
from flowledger.receiver.otlp._salvage import decode_export

__all__ = ["GRPC_STOP_GRACE_S", "SERVICES", "start_grpc"]

GRPC_STOP_GRACE_S: Final = 5.0
"""Calls under way when the receiver stops get this long to finish."""
EXPORT_METHOD: Final = "Export"
SERVICES: Final = {
    trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name: OtlpSignal.TRACES,
    logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name: OtlpSignal.LOGS,
    metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name: OtlpSignal.METRICS,
}
"""The OTLP services, by their full gRPC names, and the signal each carries."""
UNAUTHENTICATED_MESSAGE: Final = "a valid API key is required: send the metadata authorization: Bearer <key>"
_CODE_BY_STATUS: Final = {
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
}

logger = logging.getLogger("flowledger.receiver.grpc")

_Method = Callable[[bytes, aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


def _authorization(context: aio.ServicerContext[bytes, bytes]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization":
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def _export(app: Any, receiver: ReceiverState, signal: OtlpSignal) -> _Method:
    async def export(body: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        project = None
        state = otlp_state_of(app, receiver)
        if receiver.keys.enabled:
            project = receiver.keys.project_for(_authorization(context))
            if project is None:
                state.count(signal, None, refused=1)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        try:
            decoded = decode_export(signal, body, OtlpFormat.PROTOBUF)
        except OtlpBodyError as exc:
            state.count(signal, project, refused=1)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        outcome = await accept(app, receiver, decoded, project=project, protobuf_body=body)
        if isinstance(outcome, Refusal):
            await context.abort(_CODE_BY_STATUS.get(outcome.status, grpc.StatusCode.INVALID_ARGUMENT), outcome.message)
        return encode_response(
            signal, OtlpFormat.PROTOBUF, rejected=outcome.rejected, error_message=outcome.error_message
        )

    return export


async def start_grpc(app: Any, receiver: ReceiverState) -> aio.Server:
    """Start the OTLP gRPC services on ``config.listen_host:grpc_port``; RuntimeError when the port cannot be bound."""
    config = receiver.config
    limit = config.limits.max_inflated_bytes
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 0),  # a port another process holds is an error, not shared
        ],
        maximum_concurrent_rpcs=config.write_queue_max_requests,
    )
    for service, signal in SERVICES.items():
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            _export(app, receiver, signal)
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {EXPORT_METHOD: handler}),))
    host = f"[{config.listen_host}]" if ":" in config.listen_host else config.listen_host
    address = f"{host}:{config.grpc_port}"
    port = server.add_insecure_port(address)
    if not port:
        raise RuntimeError(f"cannot listen for OTLP/gRPC on {address}")
    await server.start()
    logger.info("OTLP/gRPC on %s:%d", host, port)
    app.state.grpc_port = port
    return server
