"""Optional API keys: bearer tokens, each bound to one project.

With no keys configured the receiver is open. With keys, every request
except ``/healthz`` and ``/openapi.json`` needs ``Authorization: Bearer
<token>``; the token's project is the only one its requests can write to or
read from. Tokens are kept only as SHA-256 digests and compared in constant
time; they never reach a log line.

Keys come from a TOML file (``--api-keys FILE``)::

    [keys]
    "the-token" = "project-name"

or from ``FLOWLEDGER_RECEIVER_API_KEYS="token1=project1,token2=project2"``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from flowledger._apikey import check_api_key
from flowledger._exceptions import ConfigError

__all__ = [
    "PROJECT_SCOPE_KEY",
    "PUBLIC_PATHS",
    "PUBLIC_PREFIX",
    "ApiKeys",
    "AuthMiddleware",
    "keys_from_env",
    "load_keys_file",
]

PROJECT_SCOPE_KEY: Final = "flowledger.project"
"""Where the middleware leaves the project of the request's API key."""
PUBLIC_PATHS: Final = frozenset({"/healthz", "/openapi.json", "/"})
"""Paths that hold no run data: the viewer's page and files load without a key, its data routes need one."""
PUBLIC_PREFIX: Final = "/viewer/"
"""The viewer's own static files (scripts, styles, icon): no run data under it either."""
_PROJECT: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_BEARER: Final = "bearer "


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class ApiKeys:
    """Token digests and the project each is bound to."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        for number, (token, project) in enumerate(keys.items(), start=1):
            if not token:
                raise ConfigError("an API key is empty; give every key a token")
            check_api_key(token, origin=f"API key {number} (of project {project!r})")
            if not _PROJECT.match(project):
                raise ConfigError(
                    f"API key project {project!r} is not a valid project name ([A-Za-z0-9][A-Za-z0-9_.-]*)"
                )
        self._by_digest = [(_digest(token), project) for token, project in keys.items()]

    @property
    def enabled(self) -> bool:
        """Whether requests need a key."""
        return bool(self._by_digest)

    def project_for(self, authorization: str | None) -> str | None:
        """The project of the bearer token in an Authorization header, or None when it is not a valid key."""
        if not authorization or authorization[: len(_BEARER)].lower() != _BEARER:
            return None
        offered = _digest(authorization[len(_BEARER) :].strip())
        found = None
        for digest, project in self._by_digest:
            if hmac.compare_digest(digest, offered):
                found = project
        return found


def load_keys_file(path: Path) -> dict[str, str]:
    """Read ``[keys] token = project`` from a TOML file."""
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"the API key file {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the API key file {path} is not valid TOML: {exc}") from None
    keys = document.get("keys")
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise ConfigError(f'the API key file {path} needs a [keys] table of "token" = "project" lines')
    if not keys:  # an empty table would quietly turn authentication off
        raise ConfigError(f'the API key file {path} has no key in its [keys] table; add "token" = "project" lines')
    return {str(k): str(v) for k, v in keys.items()}


def keys_from_env(value: str | None) -> dict[str, str]:
    """Parse ``token1=project1,token2=project2``; a key given twice is refused (as a TOML file refuses it), never
    bound to whichever project came last."""
    keys: dict[str, str] = {}
    for number, part in enumerate((p for p in (value or "").split(",") if p.strip()), start=1):
        token, sep, project = part.strip().rpartition("=")
        if not sep or not token:
            raise ConfigError("FLOWLEDGER_RECEIVER_API_KEYS must look like token1=project1,token2=project2")
        if token in keys:
            first = list(keys).index(token) + 1
            raise ConfigError(f"FLOWLEDGER_RECEIVER_API_KEYS gives one key as entries {first} and {number}: once only")
        keys[token] = project
    return keys


def merge_keys(from_env: Mapping[str, str], from_file: Mapping[str, str], path: Path) -> dict[str, str]:
    """The keys of the environment and of the file together; a key in both is refused (whichever project it
    was meant to have, one of the two would be silently lost)."""
    for number, token in enumerate(from_env, start=1):
        if token in from_file:
            raise ConfigError(
                f"entry {number} of FLOWLEDGER_RECEIVER_API_KEYS is a key of the API key file {path} too; give it once"
            )
    return {**from_env, **from_file}


class AuthMiddleware:
    """ASGI middleware: 401 for a request without a valid key (when keys are configured)."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys.enabled or _public(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        project = self.keys.project_for(header)
        if project is None:
            response = JSONResponse(
                {"error": "a valid API key is required: send Authorization: Bearer <key>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        scope[PROJECT_SCOPE_KEY] = project
        await self.app(scope, receive, send)
