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
    │   ├── QueryParamError            a query parameter of a receiver route cannot be used (answered with 400)
    │   ├── ViewerQueryError           a viewer query the client asked cannot be answered (answered with 400)
    │   └── KeyFileError               a signing or verifier key file cannot be used
    └── RuntimeFailure                 something went wrong while doing the work
        ├── RunAborted                 a run passed its deadline or budget
        ├── NodeTimeout                a node attempt ran past its timeout_s
        ├── WorkflowFailed             a generated workflow's run failed at a node
        ├── HttpNodeError              an http node's request was answered outside 2xx
        ├── WriteQueueFull             the receiver's writer holds as many requests as it may (answered with 503)
        ├── StoreError                 the receiver's store failed
        │   ├── LedgerIntegrityError   the ledger's hash chain does not verify
        │   └── SchemaVersionError     the database was written by a newer flowledger
        ├── ProofError                 a checkpoint or proof does not verify (signature, shape, or contents)
        └── ReceiverError              a receiver answered with an error

The SDK's hooks never raise these into user code; they surface from the CLI,
from codegen, and from the receiver's store, where a clear message is the
point. ``RunAborted`` and ``NodeTimeout`` are raised inside a run on purpose,
to stop work that must stop.
"""

from __future__ import annotations

__all__ = [
    "BodyError",
    "ConfigError",
    "DefinitionError",
    "FlowledgerError",
    "GenerationError",
    "HttpNodeError",
    "KeyFileError",
    "LedgerIntegrityError",
    "NodeTimeout",
    "OtlpBodyError",
    "ProofError",
    "QueryParamError",
    "ReceiverError",
    "RunAborted",
    "RuntimeFailure",
    "SchemaVersionError",
    "StoreError",
    "UsageError",
    "ViewerQueryError",
    "WireFormatError",
    "WorkflowFailed",
    "WriteQueueFull",
]


class FlowledgerError(Exception):
    """Root of every exception flowledger raises."""


class UsageError(FlowledgerError):
    """The caller misused an API or gave input that cannot be used."""


class ConfigError(UsageError):
    """A setting has a value that cannot be used."""


class DefinitionError(UsageError):
    """A workflow definition is invalid.

    ``problems`` holds every problem found, each already a full sentence
    naming the file, line and place in the definition.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the definition"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class WireFormatError(UsageError):
    """An event does not follow the wire format."""


class RuntimeFailure(FlowledgerError):
    """Something went wrong while doing the work."""


class RunAborted(RuntimeFailure):
    """A run passed its deadline or its budget and was stopped.

    ``reason`` is an ``AbortReason``: ``"deadline"`` or ``"budget"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class NodeTimeout(RuntimeFailure):
    """A node attempt ran longer than its ``timeout_s``."""


class StoreError(RuntimeFailure):
    """The receiver's store failed."""


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


class WorkflowFailed(RuntimeFailure):
    """A run of a generated workflow failed at a node.

    ``run_id`` names the run in the history, ``node_id`` the failing node;
    the node's own exception is the ``__cause__``.
    """

    def __init__(self, message: str, *, run_id: str, node_id: str | None) -> None:
        self.run_id = run_id
        self.node_id = node_id
        super().__init__(message)


# --- workflow runtime and codegen ----------------------------------------------


class GenerationError(DefinitionError):
    """Rendering failed, or the rendered module does not keep every node on the hooks."""


class HttpNodeError(RuntimeFailure):
    """An http node's request was answered with a status outside 2xx; ``status_code`` is the status."""

    def __init__(self, message: str, *, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(message)


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
    """A query parameter of a receiver route cannot be used; the message names the parameter."""


class ViewerQueryError(UsageError):
    """A query the viewer cannot answer because of what the client asked (answered with 400)."""


class WriteQueueFull(RuntimeFailure):
    """The receiver's writer has more requests waiting than it may hold."""
