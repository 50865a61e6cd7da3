"""Optional API keys: bearer tokens, each bound to one project.

With no keys configured the receiver is open. With keys, every request
except ``/healthz`` and ``/openapi.json`` needs ``Authorization: Bearer
<token>``; the token's project is the only one its requests can write to or
read from. Tokens are kept only as SHA-256 digests and compared in constant
time; they never reach a log line.

Keys come from a TOML file (``--api-keys FILE``)::

    [keys]
    "the-token" = "project-name"

or from ``FLOWLEDGER_RECEIVER_API_KEYS="token1=project1,token2=project2"``:
the key first, its project second. Both are checked where they are read,
and a message about an entry names it by its place (the variable's entry
number, the file's entry and line), never by either side's value: an entry
written the wrong way round has its secret on the project's side. A key
shorter than :data:`MIN_API_KEY_CHARS`, or one that is also a project's
name, is refused as no secret (most often a project name where the key
goes).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from flowledger._apikey import check_api_key
from flowledger._exceptions import ConfigError

__all__ = [
    "MIN_API_KEY_CHARS",
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
MIN_API_KEY_CHARS: Final = 16
"""The fewest characters of a key given to ``serve``: a shorter one is too easy to guess to be a secret (and is
most often a project name written where the key goes)."""
_ENV: Final = "FLOWLEDGER_RECEIVER_API_KEYS"
_PROJECT: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PROJECT_RULE: Final = "a letter or digit, then up to 127 letters, digits, '_', '.' or '-'"
_BEARER: Final = "bearer "
_NEW_KEY: Final = 'python -c "import secrets; print(secrets.token_urlsafe(24))"'


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _check_entries(entries: Iterable[tuple[str, str, str]], *, written: str) -> None:
    """Refuse the first entry ``(key, project, origin)`` whose key cannot be sent or is no secret, or whose project
    is not a project name; each message names the entry by ``origin`` alone, never a value of either side (an entry
    the wrong way round has its secret on the project's side). ``written`` shows how an entry is written."""
    listed = list(entries)
    swap = f"an entry is {written}, the key first: if this one is the wrong way round, swap its two sides"
    projects = {project: origin for _, project, origin in listed}
    for key, project, origin in listed:
        check_api_key(key, origin=f"the key of {origin}")
        if not _PROJECT.match(project):
            raise ConfigError(f"the project of {origin} is not a valid project name ({_PROJECT_RULE}); {swap}")
        if len(key) < MIN_API_KEY_CHARS:
            raise ConfigError(
                f"the key of {origin} is shorter than {MIN_API_KEY_CHARS} characters, too short to be a secret; "
                f"{swap}, else replace the key by a longer random one (such as {_NEW_KEY} prints)"
            )
    for key, _, origin in listed:
        if key in projects:
            raise ConfigError(
                f"the key of {origin} is the project of {projects[key]}, so it is no secret; {swap}, else replace "
                f"the key by a random one (such as {_NEW_KEY} prints)"
            )


class ApiKeys:
    """Token digests and the project each is bound to."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        # serve checks its keys where it reads them (naming the variable or file); here, what any key list needs.
        projects = set(keys.values())
        for number, (token, project) in enumerate(keys.items(), start=1):
            check_api_key(token, origin=f"API key {number}")
            if not _PROJECT.match(project):
                raise ConfigError(f"the project of API key {number} is not a valid project name ({_PROJECT_RULE})")
            if token in projects:
                raise ConfigError(f"API key {number} is a project's name too, so it is no secret; give a random key")
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


def _key_lines(text: str) -> dict[str, int]:
    """The line of each key written on a line of its own in the ``[keys]`` table (each line read alone; a key
    written otherwise, as in an inline table, has none)."""
    lines: dict[str, int] = {}
    table: object = None
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            read = tomllib.loads(line)
        except tomllib.TOMLDecodeError:
            continue
        if line.lstrip().startswith("["):
            table = read
        elif table == {"keys": {}} and len(read) == 1:
            [(key, value)] = read.items()
            if isinstance(value, str):
                lines.setdefault(key, number)
    return lines


def load_keys_file(path: Path) -> dict[str, str]:
    """Read ``[keys] token = project`` from a TOML file; a bad entry is a ConfigError naming its place in the file."""
    try:
        text = path.read_text("utf-8")
        document = tomllib.loads(text)
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
    lines = _key_lines(text)

    def origin(number: int, key: str) -> str:
        line = lines.get(key)
        return f"entry {number} of [keys] in the API key file {path}" + ("" if line is None else f" (line {line})")

    found = {str(k): str(v) for k, v in keys.items()}
    _check_entries(
        ((key, project, origin(number, key)) for number, (key, project) in enumerate(found.items(), start=1)),
        written='"key" = "project"',
    )
    return found


def keys_from_env(value: str | None) -> dict[str, str]:
    """Parse ``token1=project1,token2=project2``; a key given twice is refused (as a TOML file refuses it), never
    bound to whichever project came last, and so is a bad entry (a ConfigError naming its number)."""
    keys: dict[str, str] = {}
    for number, part in enumerate((p for p in (value or "").split(",") if p.strip()), start=1):
        token, sep, project = part.strip().rpartition("=")
        if not sep or not token:
            raise ConfigError(f"entry {number} of {_ENV} is not key=project; write key1=project1,key2=project2")
        if token in keys:
            first = list(keys).index(token) + 1
            raise ConfigError(f"{_ENV} gives one key as entries {first} and {number}: once only")
        keys[token] = project
    _check_entries(
        ((key, project, f"entry {number} of {_ENV}") for number, (key, project) in enumerate(keys.items(), start=1)),
        written="key=project",
    )
    return keys


def merge_keys(from_env: Mapping[str, str], from_file: Mapping[str, str], path: Path) -> dict[str, str]:
    """The keys of the environment and of the file together; a key in both is refused (whichever project it
    was meant to have, one of the two would be silently lost)."""
    for number, token in enumerate(from_env, start=1):
        if token in from_file:
            raise ConfigError(f"entry {number} of {_ENV} is a key of the API key file {path} too; give it once")
    # Each source checked its own entries; a key of one that is a project of the other is no secret either.
    _check_entries(
        [
            *((key, project, f"entry {n} of {_ENV}") for n, (key, project) in enumerate(from_env.items(), start=1)),
            *(
                (key, project, f"entry {n} of [keys] in the API key file {path}")
                for n, (key, project) in enumerate(from_file.items(), start=1)
            ),
        ],
        written='key=project (in the file, "key" = "project")',
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
