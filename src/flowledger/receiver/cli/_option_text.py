"""Command-line text that is not UTF-8: one usage error naming the option, before any command reads it.

Python hands a program its arguments decoded from UTF-8 with ``surrogateescape``: a byte that is not UTF-8
(``$'Z\\xfcrich'`` typed in a Latin-1 terminal, ``$'\\xff'``) arrives as a lone surrogate (``'\\udcfc'``). No id,
name or filter the receiver holds is such text, the HTTP API cannot be sent it, and a database refuses to
compare with it. :func:`undecodable_param` finds the first such value among a command's parameters (options,
arguments and the environment variables they read), so that every command refuses it the same way, on
``--db`` and ``--url`` alike. A file path is not text: it is bytes to the file system, whatever they are, and
click hands it over as a :class:`~pathlib.Path`, which is never checked here; nor is an option whose text may
be a path (:data:`PATHS_IN_TEXT`: ``verify --checkpoint FILE``, ``migrate --from sqlite:PATH``), unless it
is a PostgreSQL URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

import click

__all__ = ["PATHS_IN_TEXT", "param_label", "undecodable_param"]

PATHS_IN_TEXT: Final = frozenset({("verify", "checkpoints"), ("migrate", "source"), ("migrate", "target")})
"""(command, parameter) whose text may hold a file path (``SEQ:HASH`` or a checkpoint FILE; ``sqlite:PATH`` or a
URL): a path's bytes need not be UTF-8, and these options read them as the file system's."""


def param_label(ctx: click.Context, param: click.Parameter) -> str:
    """How a message names ``param``: its longest option (``--workflow``), its metavar (``RUN_ID``) for an
    argument, or the environment variable its value came from."""
    from_env = ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.ENVIRONMENT
    if from_env and isinstance(param.envvar, str):
        return param.envvar
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name.upper()


def _texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _texts(item)


def _undecodable(text: str) -> str | None:
    """Where ``text`` is not UTF-8, or None: the first byte that is not, and its place (never the text itself:
    it may be a secret, such as an API key)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = os.fsencode(text[exc.start : exc.start + 1]) if "\udc80" <= text[exc.start] <= "\udcff" else b""
        byte = f"the byte 0x{raw[0]:02x}" if raw else "a lone surrogate"
        return f"{byte} at character {exc.start + 1}"
    return None


def undecodable_param(ctx: click.Context) -> str | None:
    """The first of the command's text values (options, arguments) that is not UTF-8, as a sentence naming its
    option; None when every one is UTF-8."""
    for param in ctx.command.params:
        paths = (ctx.command.name, param.name) in PATHS_IN_TEXT
        for text in _texts(ctx.params.get(param.name or "")):
            if paths and not text.lower().startswith(("postgresql://", "postgres://")):
                continue  # a path; a PostgreSQL URL in the same option is text the server is sent
            where = _undecodable(text)
            if where is not None:
                return f"{param_label(ctx, param)} is not UTF-8 text ({where}); give it in UTF-8"
    return None
