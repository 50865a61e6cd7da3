"""http nodes: send the node's input as JSON, return the JSON reply.

The request carries the node attempt's W3C ``traceparent``, so the receiving
service joins the run's trace, and the run's id in the W3C ``baggage`` header
(``flowledger.run_id``), so a workflow it starts records this run as its parent.
The run's id is added to the baggage of the context the request is sent in, and
the headers are those the application's OpenTelemetry propagators write: the
context's ``tracestate`` and other baggage entries go along (after any
``baggage`` the definition sets), and an instrumented httpx client carries them too.
A reply outside 2xx fails the attempt with the status code and the start of the body in the message. Every request
counts as one ``external_requests`` in the attempt's cost, and the attempt's
record and span get the OpenTelemetry HTTP attributes (``http.request.method``,
``url.full``, ``http.response.status_code``); its timing is the attempt's.

The URL may hold secrets (``http://user:password@host``, ``?token=...``) and so may header values read
from the environment. The request uses them as they are; everything else sees :func:`shown`, the URL with
its userinfo and query values masked (:func:`~flowledger._url.masked`, as the SDK shows its
endpoints): ``url.full``, the ``flowledger.http`` attribute, every error message, and httpx's own INFO line
of the request (sent within :func:`~flowledger.instrument.delivery._transport.masked_requests`, so the
``httpx`` logger's filter masks it as it does the SDK's deliveries: on the application's handlers and in
the attempt's captured log lines alike). A failure of the
request is raised again as the same httpx exception with a message of our own and no chained cause, since
httpx's text may quote the URL (an invalid one) or a header value (one HTTP cannot carry). Header values
read from the environment are checked before anything is sent; the error names the header and the
variable, never the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.baggage import get_baggage, set_baggage
from opentelemetry.context import attach, detach
from opentelemetry.propagate import inject

from flowledger._exceptions import ConfigError, HttpNodeError
from flowledger._run_context import BAGGAGE_RUN_ID_KEY, baggage_with_run_id, run_id_from_baggage
from flowledger._url import masked
from flowledger.instrument import NodeAttempt, Run, cost, traceparent
from flowledger.workflow._os_reason import os_reason
from flowledger.workflow._spec import Env, Http, HttpMethod

if TYPE_CHECKING:  # httpx is imported by the run's client, on the first http node (see Execution.http_client)
    import httpx

__all__ = ["DEFAULT_HTTP_TIMEOUT_S", "send", "shown"]

DEFAULT_HTTP_TIMEOUT_S: Final = 30.0
ERROR_BODY_PREVIEW_CHARS: Final = 300
_BODYLESS: Final = frozenset({HttpMethod.GET.value, HttpMethod.DELETE.value})
HEADER_VALUE: Final = re.compile(r"(?:[!-~](?:[ \t!-~]*[!-~])?)?\Z")
"""Visible ASCII, with spaces and tabs only between visible characters: the header values httpx can encode
and h11 sends (the rule codegen applies to the values a definition writes out)."""
_CHARACTER_NAMES: Final = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", " ": "a space"}


def shown(spec: Http) -> str:
    """``METHOD url`` as messages and records show the node: the URL's userinfo and query values masked."""
    return f"{spec.method} {masked(spec.url)}"


def _traceparent(hook: NodeAttempt, recorder: Run) -> str | None:
    current = traceparent()
    if current:
        return current
    if recorder.trace_id and hook.span_id:
        return f"00-{recorder.trace_id}-{hook.span_id}-01"
    return None


def _describe(char: str) -> str:
    return _CHARACTER_NAMES.get(char) or f"the character U+{ord(char):04X}"


def _env_header(node_id: str, name: str, env: Env) -> str:
    """The value of header ``name`` read from ``env``; ConfigError naming both, never the value, if HTTP cannot
    carry it (a line break or other control character, a character past ASCII, a space at either end)."""
    value = env.read(node_id, f"http.headers.{name}")
    if HEADER_VALUE.match(value):
        return value
    position = next((i for i, c in enumerate(value) if not (" " <= c <= "~" or c == "\t")), None)
    if position is None:  # visible ASCII, with a space or tab at an end
        position = 0 if value[0] in " \t" else len(value) - 1
    raise ConfigError(
        f"environment variable {env.name} holds {_describe(value[position])} at character {position + 1} of "
        f"{len(value)}; node `{node_id}` sends it as header {name}, whose value must be visible ASCII with spaces "
        "or tabs only between characters: set the variable without it"
    )


def _failure(exc: Exception, node: str) -> Exception | None:
    """An httpx failure again, of its own type, with a message that quotes none of httpx's text (it may hold a
    secret); None for any other exception. ``node`` is the node's method and masked URL (:func:`shown`)."""
    import httpx  # imported already: the failed request made the client

    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        what = "cannot be sent to this URL: write an http:// or https:// URL with a valid host and port"
    elif isinstance(exc, httpx.ConnectTimeout):
        what = f"could not connect within {DEFAULT_HTTP_TIMEOUT_S:g} s: check that the server is up and reachable"
    elif isinstance(exc, httpx.TimeoutException):
        what = f"got no answer within {DEFAULT_HTTP_TIMEOUT_S:g} s"
    elif isinstance(exc, httpx.NetworkError):
        system = os_reason(exc)
        what = f"failed on the network ({system})" if system else "failed on the network"
        if isinstance(exc, httpx.ConnectError):
            what += ": check that the server is up and reachable"
    elif isinstance(exc, httpx.LocalProtocolError):
        what = "could not be written as HTTP: check the node's headers"
    elif isinstance(exc, httpx.RemoteProtocolError):
        what = "got an answer that is not valid HTTP"
    elif isinstance(exc, httpx.RequestError):
        what = f"failed ({type(exc).__name__})"
    else:
        return None
    message = f"{node} {what}"
    if isinstance(exc, httpx.RequestError):
        try:
            request: httpx.Request | None = exc.request
        except RuntimeError:  # raised without its request
            request = None
        return type(exc)(message, request=request)
    return type(exc)(message)


async def send(
    node_id: str, spec: Http, value: Any, client: Callable[[], httpx.AsyncClient], hook: NodeAttempt, recorder: Run
) -> Any:
    """Send one request for ``node_id``; return the decoded JSON reply (text if it is not JSON).

    ``client`` returns the run's HTTP client; it is asked for only once the
    headers (and their environment variables) are known to be usable.
    """
    method = str(spec.method)
    headers = {
        name: _env_header(node_id, name, item) if isinstance(item, Env) else item for name, item in spec.headers.items()
    }
    # The run's id goes into the baggage of the context the request is sent in, not only into a header of our
    # own: the application's propagators write it out with the context's other entries and its tracestate, and
    # an instrumented client (opentelemetry-instrumentation-httpx), whose inject replaces the headers, keeps it.
    token = attach(set_baggage(BAGGAGE_RUN_ID_KEY, recorder.run_id)) if recorder.run_id else None
    try:
        _add_trace_context(headers, _traceparent(hook, recorder))
        return await _request(node_id, spec, method, value, headers, client, hook)
    finally:
        if token is not None:
            detach(token)


def _add_trace_context(headers: dict[str, str], parent: str | None) -> None:
    """Add the current context's propagated headers to ``headers``: its ``tracestate`` and ``baggage`` (merged with
    any ``baggage`` the definition sets), and ``parent`` as the ``traceparent``."""
    carrier: dict[str, str] = {}
    inject(carrier)
    for name, text in carrier.items():
        if name == "baggage":
            text = ",".join(part for part in (headers.get(name), text) if part)
        headers[name] = text
    if parent:
        headers["traceparent"] = parent
    run_id = get_baggage(BAGGAGE_RUN_ID_KEY)
    if isinstance(run_id, str) and run_id_from_baggage(headers.get("baggage")) != run_id:
        # the application's propagators write no baggage (OTEL_PROPAGATORS without it): the called workflow
        # still learns which run called it
        headers["baggage"] = baggage_with_run_id(headers.get("baggage"), run_id)


async def _request(
    node_id: str,
    spec: Http,
    method: str,
    value: Any,
    headers: dict[str, str],
    client: Callable[[], httpx.AsyncClient],
    hook: NodeAttempt,
) -> Any:
    """Send the request with ``headers``; return the decoded JSON reply (text if it is not JSON)."""
    body = None if method in _BODYLESS else json.dumps(value, default=str).encode()
    if body is not None:
        headers.setdefault("content-type", "application/json")
    # on the attempt's record and its span (OTel HTTP semantic conventions); never the URL's secrets
    url_shown = masked(spec.url)
    hook.set_attribute("http.request.method", method)
    hook.set_attribute("url.full", url_shown)
    http = client()
    # imported with the client (httpx is loaded by now); importing it also puts the masking filter on httpx's logger
    from flowledger.instrument.delivery._transport import masked_requests

    try:
        with masked_requests():  # httpx logs the request, URL included, at INFO
            response = await http.request(
                method, spec.url, content=body, headers=headers, timeout=DEFAULT_HTTP_TIMEOUT_S
            )
    except Exception as exc:
        failure = _failure(exc, f"{method} {url_shown}")
        if failure is None:
            raise
        raise failure from None  # httpx's text, and its cause's, may quote the URL or a header value
    cost(external_requests=1)
    hook.set_attribute("http.response.status_code", response.status_code)
    if not response.is_success:
        preview = response.text[:ERROR_BODY_PREVIEW_CHARS]
        raise HttpNodeError(
            f"{method} {url_shown} answered {response.status_code} {response.reason_phrase}: {preview}",
            status_code=response.status_code,
        )
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text
