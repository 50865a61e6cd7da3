"""http nodes: send the node's input as JSON, return the JSON reply.

The request carries the node attempt's W3C ``traceparent``, so the receiving
service joins the run's trace, and the run's id in the W3C ``baggage`` header
(``flowledger.run_id``), so a workflow it starts records this run as its parent.
A reply outside 2xx fails the attempt with the status code and the start of the body in the message. Every request
counts as one ``external_requests`` in the attempt's cost, and the attempt's
record and span get the OpenTelemetry HTTP attributes (``http.request.method``,
``url.full``, ``http.response.status_code``); its timing is the attempt's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from flowledger._exceptions import HttpNodeError
from flowledger._run_context import baggage_with_run_id
from flowledger.instrument import NodeAttempt, Run, cost, traceparent
from flowledger.workflow._spec import Env, Http, HttpMethod

if TYPE_CHECKING:  # httpx is imported by the run's client, on the first http node (see Execution.http_client)
    import httpx

__all__ = ["DEFAULT_HTTP_TIMEOUT_S", "send"]

DEFAULT_HTTP_TIMEOUT_S: Final = 30.0
ERROR_BODY_PREVIEW_CHARS: Final = 300
_BODYLESS: Final = frozenset({HttpMethod.GET.value, HttpMethod.DELETE.value})


def _traceparent(hook: NodeAttempt, recorder: Run) -> str | None:
    current = traceparent()
    if current:
        return current
    if recorder.trace_id and hook.span_id:
        return f"00-{recorder.trace_id}-{hook.span_id}-01"
    return None


async def send(
    node_id: str, spec: Http, value: Any, client: Callable[[], httpx.AsyncClient], hook: NodeAttempt, recorder: Run
) -> Any:
    """Send one request for ``node_id``; return the decoded JSON reply (text if it is not JSON).

    ``client`` returns the run's HTTP client; it is asked for only once the
    headers (and their environment variables) are known to be usable.
    """
    method = str(spec.method)
    headers = {
        name: item.read(node_id, f"http.headers.{name}") if isinstance(item, Env) else item
        for name, item in spec.headers.items()
    }
    parent = _traceparent(hook, recorder)
    if parent:
        headers["traceparent"] = parent
    if recorder.run_id:  # the called workflow records this run as its parent
        headers["baggage"] = baggage_with_run_id(headers.get("baggage"), recorder.run_id)
    body = None if method in _BODYLESS else json.dumps(value, default=str).encode()
    if body is not None:
        headers.setdefault("content-type", "application/json")
    # on the attempt's record and its span (OTel HTTP semantic conventions)
    hook.set_attribute("http.request.method", method)
    hook.set_attribute("url.full", spec.url)
    response = await client().request(method, spec.url, content=body, headers=headers, timeout=DEFAULT_HTTP_TIMEOUT_S)
    cost(external_requests=1)
    hook.set_attribute("http.response.status_code", response.status_code)
    if not response.is_success:
        preview = response.text[:ERROR_BODY_PREVIEW_CHARS]
        raise HttpNodeError(
            f"{method} {spec.url} answered {response.status_code} {response.reason_phrase}: {preview}",
            status_code=response.status_code,
        )
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text
