"""A node spec as JSON, so that a worker on another machine runs exactly the node the scheduler sent.

Only JSON crosses to the worker (no pickle): the node's call or request,
its ``with`` arguments (``{env: NAME}`` stays a reference, read on the
worker), ``timeout_s``, ``effect`` and where it was declared. Retries,
``when``, ``map`` and ``needs`` stay with the scheduler. The node's output
crosses back as JSON too: :func:`not_json` says why a value cannot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowledger._exceptions import ConfigError
from flowledger.instrument import Location
from flowledger.workflow._spec import Call, Env, Http, Node

__all__ = ["node_from_json", "node_to_json", "not_json"]

_ENV_KEY = "$env"


def _value_to_json(value: Any) -> Any:
    return {_ENV_KEY: value.name} if isinstance(value, Env) else value


def _value_from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {_ENV_KEY}:
        return Env(str(value[_ENV_KEY]))
    return value


def _mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _value_to_json(value) for key, value in values.items()}


def node_to_json(node: Node, location: Location) -> dict[str, Any]:
    """What a worker needs of ``node`` to run one attempt of it."""
    out: dict[str, Any] = {
        "id": node.id,
        "kwargs": _mapping(node.kwargs),
        "timeout_s": node.timeout_s,
        "effect": node.effect,
        "location": location.as_dict(),
    }
    if node.call is not None:
        out["call"] = [node.call.module, node.call.function]
    if node.http is not None:
        out["http"] = {"url": node.http.url, "method": node.http.method, "headers": _mapping(node.http.headers)}
    return out


def node_from_json(data: Mapping[str, Any]) -> tuple[Node, Location]:
    """The node and its location from :func:`node_to_json`'s output; ValueError when it is not one."""
    try:
        call = Call(*data["call"]) if data.get("call") else None
        http = None
        if data.get("http"):
            spec = data["http"]
            headers = {key: _value_from_json(value) for key, value in spec.get("headers", {}).items()}
            http = Http(url=spec["url"], method=spec["method"], headers=headers)
        node = Node(
            id=str(data["id"]),
            call=call,
            http=http,
            kwargs={key: _value_from_json(value) for key, value in data.get("kwargs", {}).items()},
            timeout_s=data.get("timeout_s"),
            effect=bool(data.get("effect")),
        )
        where = data.get("location") or {}
        location = Location(str(where.get("file", "")), int(where.get("line", 0)), str(where.get("path", "")))
    except (KeyError, TypeError, AttributeError, ConfigError) as exc:
        raise ValueError(f"not a node spec: {exc!r}") from None
    return node, location


def not_json(value: Any) -> str | None:
    """Why ``value`` is not a JSON value that can cross to or from a worker (None when it is one)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:  # a set, an object, a circular list, a huge int
        return f"{type(exc).__name__}: {exc}"
    return None
