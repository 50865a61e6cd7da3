"""Every exception flowledger raises, in one place.

The hierarchy::

    FlowledgerError                    root of everything flowledger raises
    ├── UsageError                     the caller misused an API or gave bad input
    │   ├── ConfigError                a setting has a value that cannot be used
    │   ├── DefinitionError            a workflow definition is invalid (carries every problem)
    │   │   └── GenerationError        rendering failed, or the module it made drops a node's hooks
    │   ├── WireFormatError            an event does not follow the wire format
    │   ├── BodyError                  a request body the receiver cannot use (carries the HTTP status)
    │   │   └── OtlpBodyError          a body that is not an OTLP export request of its signal
    │   ├── QueryParamError            a query parameter of a receiver route cannot be parsed (answered with 400)
    │   ├── QueryError                 the store cannot answer a query as asked: a foreign cursor, a run-id
    │   │                              search too short or too wide, an unknown payload (answered with 400)
    │   │   └── AmbiguousRunError      a run id used in several projects, read naming none (answered with 409)
    │   └── KeyFileError               a signing or verifier key file cannot be used
    └── RuntimeFailure                 something went wrong while doing the work
        ├── RunAborted                 a run passed its deadline or budget
        ├── NodeTimeout                a node attempt ran past its timeout_s
        ├── NodeExited                 a node's code called sys.exit() (raised SystemExit) instead of returning
        ├── WorkflowFailed             a generated workflow's run failed at a node
        ├── ReportedFailure            a runtime reported a failed attempt without an exception to show
        ├── HttpNodeError              an http node's request was answered outside 2xx
        ├── RemoteNodeError            a node attempt failed on a distributed executor's worker
        │   └── NodeLost               the worker running an attempt died or never answered
        ├── WriteQueueFull             the receiver's writer holds as many requests as it may (answered with 503)
        ├── StoreError                 the receiver's store failed
        │   ├── UnstorableError        what was handed to the store holds a value it cannot keep
        │   ├── LedgerIntegrityError   the ledger's hash chain does not verify
        │   └── SchemaVersionError     the database was written by a newer flowledger
        ├── ProofError                 a checkpoint or proof does not verify (signature, shape, or contents)
        ├── ReceiverError              a receiver answered with an error
        └── ResumeRefused              a run cannot be resumed: a recorded output does not match the ledger, ...

The exceptions users import go by the name they import them by: their
``__module__`` is their public home (``flowledger.RunAborted``, not
``flowledger._exceptions.RunAborted``), so tracebacks and the error types the
SDK records show that name. The others, exported nowhere, keep this
module's name.

The SDK's hooks never raise these into user code; they surface from the CLI,
from codegen, and from the receiver's store, where a clear message is the
point. ``RunAborted`` and ``NodeTimeout`` are raised inside a run on purpose,
to stop work that must stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "AmbiguousRunError",
    "BodyError",
    "ConfigError",
    "DefinitionError",
    "FlowledgerError",
    "GenerationError",
    "HttpNodeError",
    "KeyFileError",
    "LedgerIntegrityError",
    "NodeExited",
    "NodeLost",
    "NodeTimeout",
    "OtlpBodyError",
    "ProofError",
    "QueryError",
    "QueryParamError",
    "ReceiverError",
    "RemoteNodeError",
    "ReportedFailure",
    "ResumeRefused",
    "RunAborted",
    "RuntimeFailure",
    "SchemaVersionError",
    "StoreError",
    "UnstorableError",
    "UsageError",
    "WireFormatError",
    "WorkflowFailed",
    "WriteQueueFull",
]

E = TypeVar("E", bound=type[BaseException])


def _public(home: str) -> Callable[[E], E]:
    """Name the decorated exception after ``home``, the public module users import it from (a test checks it does)."""

    def rename(cls: E) -> E:
        cls.__module__ = home
        return cls

    return rename


def _unplaced(problem: str) -> dict[str, Any]:
    return {"file": None, "line": None, "column": None, "path": None, "message": problem}


@_public("flowledger")
class FlowledgerError(Exception):
    """Root of every exception flowledger raises."""


@_public("flowledger")
class UsageError(FlowledgerError):
    """The caller misused an API or gave input that cannot be used."""


@_public("flowledger")
class ConfigError(UsageError):
    """A setting has a value that cannot be used."""


@_public("flowledger")
class DefinitionError(UsageError):
    """A workflow definition is invalid.

    ``problems`` holds every problem found, each already a full sentence
    naming the file, line and place in the definition.
    """

    def __init__(self, problems: list[str], *, details: list[dict[str, Any]] | None = None) -> None:
        self.problems = list(problems)
        self.details = details if details is not None else [_unplaced(p) for p in self.problems]
        """Each problem as ``{file, line, column, path, message}`` (``validate --json``); place fields are None
        for a problem without a place in the definition (a template's)."""
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the definition"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class WireFormatError(UsageError):
    """An event does not follow the wire format."""


@_public("flowledger")
class RuntimeFailure(FlowledgerError):
    """Something went wrong while doing the work."""


@_public("flowledger")
class RunAborted(RuntimeFailure):
    """A run passed its deadline or its budget, or was interrupted (SIGINT in a generated module), and was stopped.

    ``reason`` is an ``AbortReason``: ``"deadline"``, ``"budget"`` or ``"interrupted"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@_public("flowledger")
class NodeTimeout(RuntimeFailure):
    """A node attempt ran longer than its ``timeout_s``."""


class NodeExited(RuntimeFailure):
    """A node's code raised ``SystemExit`` (it called ``sys.exit``) instead of returning its output or raising.

    The node's attempt is recorded as failed with this error (its ``__cause__`` is the ``SystemExit``): a node
    that ends the process has no output to record or to give its dependents.
    """


class StoreError(RuntimeFailure):
    """The receiver's store failed."""


class StoreUnavailable(StoreError):
    """The store's database cannot be reached or written now (down, restarting, locked, its disk full or read-only):
    the same request may succeed later.

    The receiver answers it 503 with ``Retry-After``; any other :class:`StoreError` is a fault of the store.
    """


class QueryTimeout(StoreError):
    """A read ran past the receiver's time limit for one query (``read_timeout_s``) and was stopped.

    The receiver answers it 503 without ``Retry-After``: the same query would take as long again; a narrower
    one (a shorter time range, fewer filters) may not.
    """


class UnstorableError(StoreError):
    """What was handed to the store holds a value it cannot keep (a number too large for a column).

    Unlike other store errors, retrying does not help: the receiver's writer
    stores the other events of the commit without it and rejects it alone.
    """


class LedgerIntegrityError(StoreError):
    """The ledger's hash chain does not verify."""


class SchemaVersionError(StoreError):
    """The database was written by a newer flowledger than this one."""


class ProofError(RuntimeFailure):
    """A signed checkpoint or a run's proof does not verify: bad signature, malformed, or contents that do not fit."""


class KeyFileError(UsageError):
    """A signing or verifier key file is not a key of the expected kind."""


class ReceiverError(RuntimeFailure):
    """A receiver answered a request with an error."""


@_public("flowledger.workflow")
class ResumeRefused(RuntimeFailure):
    """A run cannot be resumed: a recorded output does not match the ledger, or what it needs was not recorded."""


@_public("flowledger")
class WorkflowFailed(RuntimeFailure):
    """A run of a generated workflow failed at a node.

    ``run_id`` names the run in the history (None when it was not recorded,
    flowledger being disabled), ``node_id`` the failing node; the node's own
    exception is the ``__cause__``.
    """

    def __init__(self, message: str, *, run_id: str | None, node_id: str | None) -> None:
        self.run_id = run_id
        self.node_id = node_id
        super().__init__(message)


# --- workflow runtime and codegen ----------------------------------------------


@_public("flowledger.adapters")
class ReportedFailure(RuntimeFailure):
    """A runtime reported that an attempt failed but handed over no exception.

    An adapter records this in its place; the message is what the runtime said.
    """


@_public("flowledger.codegen")
class GenerationError(DefinitionError):
    """Rendering failed, or the rendered module does not keep every node on the hooks."""


@_public("flowledger.workflow")
class HttpNodeError(RuntimeFailure):
    """An http node's request was answered with a status outside 2xx; ``status_code`` is the status."""

    def __init__(self, message: str, *, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(message)


@_public("flowledger.workflow.executors")
class RemoteNodeError(RuntimeFailure):
    """A node attempt failed on a distributed executor's worker.

    ``type_name`` is the name of the exception the worker raised (the
    worker's record of the attempt has its stack); the message is its message.
    """

    def __init__(self, message: str, *, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(message)


@_public("flowledger.workflow.executors")
class NodeLost(RemoteNodeError):
    """The worker running a node attempt died (or never answered); the attempt is recorded as failed and retried."""


# --- receiver ----------------------------------------------------------------


class BodyError(UsageError):
    """A request body the receiver cannot use; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class OtlpBodyError(BodyError):
    """A body that is not an OTLP export request of the signal; ``status`` is the HTTP answer."""


class QueryParamError(UsageError):
    """A query parameter of a receiver route cannot be parsed; the message names the parameter."""


class QueryError(UsageError):
    """The store cannot answer a query as the caller asked it (an API or viewer route answers 400).

    Raised by the store whichever stage asked: a cursor it did not make, a run-id search too short or
    matching too many runs, a payload kind there is none of. :class:`QueryParamError` is the route's own
    parsing of its parameters, before the store is asked.
    """


class AmbiguousRunError(QueryError):
    """A run id is used in more than one project and the reader named none (a receiver route answers 409).

    Runs are per project; with API keys on every read names the key's project, so only a reader
    without one meets this.
    """


class WriteQueueFull(RuntimeFailure):
    """The receiver's writer has more requests waiting than it may hold."""
