"""The CLI's two ways to reach runs: a database file, or a running receiver.

:class:`DbSource` opens the SQLite file (read-only for queries) and
:class:`UrlSource` calls the HTTP API; both answer the same questions, so
every CLI command works on ``--db`` and ``--url`` alike.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import functools
import json
import math
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import quote

import httpx

from flowledger._apikey import check_api_key
from flowledger._exceptions import AmbiguousRunError, ReceiverError, UsageError
from flowledger._url import masked, url_problem
from flowledger.receiver._export import MEDIA_TYPES, ExportFormat, export_lines
from flowledger.receiver.store._custom_metrics import CustomMetricQuery
from flowledger.receiver.store._error_groups import ErrorGroupQuery
from flowledger.receiver.store._integrity import CoverageQuery, CoverageReport, ReconcileReport, ReconcileScope
from flowledger.receiver.store._proof import iter_entries
from flowledger.receiver.store._protocol import (
    Drift,
    EntryProof,
    PurgeReport,
    PurgeSelection,
    RunPage,
    RunQuery,
    Store,
    TreeHead,
    VerifyReport,
)
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._stats import StatsQuery
from flowledger.receiver.store._views import RunPageCursor

__all__ = ["DbSource", "ImportReport", "JsonlLine", "Source", "UrlSource", "read_jsonl"]

REQUEST_TIMEOUT_S: Final = 30.0
IMPORT_CHUNK_EVENTS: Final = 500
"""Events per request (or per store append) of ``flowledger import``."""
IMPORT_CHUNK_BYTES: Final = 2 * 1024 * 1024
T = TypeVar("T")


@dataclass
class ImportReport:
    """What ``flowledger import`` did with each line: stored, already stored, or refused (with why)."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """``{"line": N, "error": "..."}`` for each line not stored."""

    def as_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


@dataclass(frozen=True, slots=True)
class JsonlLine:
    """One event line of a JSONL file."""

    number: int
    """Its line number, from 1."""
    event: Any
    """The event decoded."""
    text: bytes
    """The line as written, less the JSON whitespace around it (and a byte order mark): what ``--url`` sends."""


def read_jsonl(path: Path, report: ImportReport) -> Iterator[list[JsonlLine]]:
    """Chunks of event lines from a JSONL file written by the SDK's jsonl sink.

    A line that is not an event JSON can carry (torn by a crash mid-write, not UTF-8, holding NaN or a number
    past the largest float, nested past what a decoder reads) is recorded in ``report.rejected`` with its
    number and skipped, alone; blank lines are ignored.
    """
    chunk: list[JsonlLine] = []
    size = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            text = line.strip(_JSON_WHITESPACE).removeprefix(codecs.BOM_UTF8)
            try:
                event = _decode_line(text)
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and the hooks' refusals among them
                report.rejected.append({"line": number, "error": f"not a JSON event: {exc}"})
                continue
            chunk.append(JsonlLine(number, event, text))
            size += len(text)
            if len(chunk) >= IMPORT_CHUNK_EVENTS or size >= IMPORT_CHUNK_BYTES:
                yield chunk
                chunk, size = [], 0
    if chunk:
        yield chunk


_JSON_WHITESPACE: Final = b" \t\r\n"


def _decode_line(text: bytes) -> Any:
    """A line's JSON value, read as strictly as the receiver reads a body: ValueError naming what it cannot carry."""
    try:
        return json.loads(
            text.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float, parse_int=_integer
        )
    except RecursionError:
        raise ValueError("it is nested too deeply (objects and arrays within each other) to be read") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number, and JSON has no such value")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal[:40]} is not a finite number: it is past the largest float")
    return value


def _integer(literal: str) -> int:
    digits, most = len(literal.lstrip("-")), sys.get_int_max_str_digits()
    if most and digits > most:
        raise ValueError(f"it holds an integer of {digits} digits; the receiver reads integers of {most} at most")
    return int(literal)


class Source(Protocol):
    """Where the CLI reads runs from."""

    def list_runs(self, query: RunQuery) -> RunPage: ...
    def get_run(self, run_id: str, project: str | None = None) -> dict[str, Any] | None: ...
    def attempt_logs(
        self, run_id: str, span_id: str, after_id: int, project: str | None = None
    ) -> dict[str, Any] | None: ...
    def export(self, query: RunQuery, fmt: ExportFormat) -> Iterator[bytes]: ...
    def verify(self, checkpoints: Sequence[tuple[int, str]]) -> VerifyReport: ...
    def rebuild(self) -> Drift: ...
    def import_jsonl(self, path: Path) -> ImportReport: ...
    def purge(self, selection: PurgeSelection) -> PurgeReport: ...
    def tree_head(self) -> TreeHead: ...
    def consistency_proof(self, old_size: int) -> tuple[TreeHead, list[bytes]]: ...
    def run_proof(self, run_id: str, tree_size: int, project: str | None = None) -> list[EntryProof]: ...
    def each_run_proof(
        self, run_id: str, tree_size: int, each: Callable[[list[EntryProof]], None], project: str | None = None
    ) -> None: ...
    def coverage(self, query: CoverageQuery) -> CoverageReport: ...
    def reconcile(self, *, repair: bool) -> ReconcileReport: ...
    def error_groups(self, query: ErrorGroupQuery) -> list[dict[str, Any]]: ...
    def run_stats(self, query: StatsQuery) -> list[dict[str, Any]]: ...
    def custom_metrics(self, query: CustomMetricQuery) -> list[dict[str, Any]]: ...


class DbSource:
    """Reads (and for rebuild, writes) a database directly: a SQLite file, or a PostgreSQL URL."""

    def __init__(self, path: Path | str) -> None:
        self.path = path

    def _store(self, *, write: bool) -> Store:
        """An unopened store of the database (read-only unless ``write``)."""
        if isinstance(self.path, str):
            from flowledger.receiver.store.postgres import PostgresStore

            return PostgresStore(self.path, pool_min=1, pool_max=2, readonly=not write)
        if not self.path.exists():
            raise UsageError(f"there is no database at {self.path}; pass --db PATH of a flowledger database")
        return SqliteStore(self.path, readers=1, readonly=not write)

    def _run(self, work: Callable[[Store], Coroutine[Any, Any, T]], *, write: bool = False) -> T:
        store = self._store(write=write)

        async def main() -> T:
            await store.open()
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(main())

    def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs."""
        return self._run(lambda store: store.list_runs(query))

    def get_run(self, run_id: str, project: str | None = None) -> dict[str, Any] | None:
        """One run with its nodes (``project``: the run of that project, when the id is used in several)."""
        return self._run(lambda store: store.get_run(run_id, project=project))

    def attempt_logs(
        self, run_id: str, span_id: str, after_id: int, project: str | None = None
    ) -> dict[str, Any] | None:
        """A page of one attempt's log lines after line ``after_id`` (as the API answers it), or None."""

        async def work(store: Store) -> dict[str, Any] | None:
            page = await store.attempt_logs(run_id, span_id, project=project, after_id=after_id)
            return None if page is None else page.as_json()

        return self._run(work)

    def error_groups(self, query: ErrorGroupQuery) -> list[dict[str, Any]]:
        """Error groups, biggest first."""
        return self._run(lambda store: store.error_groups(query))

    def run_stats(self, query: StatsQuery) -> list[dict[str, Any]]:
        """Statistics per group."""
        return self._run(lambda store: store.run_stats(query))

    def custom_metrics(self, query: CustomMetricQuery) -> list[dict[str, Any]]:
        """Custom metric totals, newest hour first."""
        return self._run(lambda store: store.custom_metrics(query))

    def export(self, query: RunQuery, fmt: ExportFormat) -> Iterator[bytes]:
        """Rendered lines in UTF-8, as ``GET /api/export`` sends them, produced chunk by chunk on a private loop."""
        store = self._store(write=False)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(store.open())
            lines = export_lines(store.iter_runs(query, with_nodes=fmt is ExportFormat.JSONL), fmt)
            while True:
                try:
                    yield loop.run_until_complete(anext(lines)).encode("utf-8")
                except StopAsyncIteration:
                    break
            loop.run_until_complete(lines.aclose())
        finally:
            loop.run_until_complete(store.close())
            loop.close()

    def verify(self, checkpoints: Sequence[tuple[int, str]]) -> VerifyReport:
        """Walk the chain."""
        return self._run(lambda store: store.verify(checkpoints))

    def rebuild(self) -> Drift:
        """Refold the projections."""
        return self._run(lambda store: store.rebuild(), write=True)

    def import_jsonl(self, path: Path) -> ImportReport:
        """Validate each event as ingest does and append it to the ledger (created when missing)."""
        from flowledger.receiver._config import IngestLimits
        from flowledger.receiver._validate import Rejection, prepare_event
        from flowledger.receiver.store._event import PreparedEvent
        from flowledger.receiver.store._protocol import EventOutcome
        from flowledger.receiver.store._sqlite import prepare_file

        if isinstance(self.path, Path):
            prepare_file(self.path)
        report = ImportReport()
        limits = IngestLimits()

        async def work(store: Store) -> ImportReport:
            for chunk in read_jsonl(path, report):
                valid: list[PreparedEvent] = []
                for index, line in enumerate(chunk):
                    prepared = prepare_event(line.event, index, limits, None)
                    if isinstance(prepared, Rejection):
                        report.rejected.append({"line": line.number, "error": prepared.error})
                    else:
                        valid.append(prepared)
                outcomes = await store.append(valid) if valid else []
                for event, (outcome, reason) in zip(valid, outcomes, strict=True):
                    if outcome is EventOutcome.ACCEPTED:
                        report.accepted += 1
                    elif outcome is EventOutcome.DUPLICATE:
                        report.duplicates += 1
                    else:
                        report.rejected.append({"line": chunk[event.index].number, "error": reason or outcome.value})
            return report

        return self._run(work, write=True)

    def purge(self, selection: PurgeSelection) -> PurgeReport:
        """Erase runs from the file (a second writer beside a running receiver is safe)."""
        return self._run(lambda store: store.purge(selection), write=True)

    def tree_head(self) -> TreeHead:
        """The Merkle tree's size and root."""
        return self._run(lambda store: store.tree_head())

    def consistency_proof(self, old_size: int) -> tuple[TreeHead, list[bytes]]:
        """The head and the consistency proof from ``old_size``."""
        return self._run(lambda store: store.consistency_proof(old_size))

    def run_proof(self, run_id: str, tree_size: int, project: str | None = None) -> list[EntryProof]:
        """A run's entries with audit paths in the tree of ``tree_size`` (``project``: the run of that project)."""
        return self._run(lambda store: store.run_proof(run_id, tree_size, project=project))

    def each_run_proof(
        self, run_id: str, tree_size: int, each: Callable[[list[EntryProof]], None], project: str | None = None
    ) -> None:
        """:meth:`run_proof` handed to ``each`` a chunk of entries at a time (nothing when the run has none)."""

        async def work(store: Store) -> None:
            async for chunk in store.iter_run_proof(run_id, tree_size, project=project):
                each(chunk)

        self._run(work)

    def coverage(self, query: CoverageQuery) -> CoverageReport:
        """Missing core events, read from the file."""
        return self._run(lambda store: store.coverage(query))

    def reconcile(self, *, repair: bool) -> ReconcileReport:
        """Every run's projection rows against a fresh fold (rewritten when drifted, with ``repair``)."""
        return self._run(lambda store: store.reconcile(ReconcileScope.everything(), repair=repair), write=repair)


_PROOF_CHUNK: Final = 256
"""Entries of a streamed run proof handed on at a time."""


def _entry_proof(item: dict[str, Any]) -> EntryProof:
    """One entry of ``GET /api/tree/runs/{run_id}``'s answer."""
    return EntryProof(
        seq=int(item["seq"]),
        entry=item["entry"].encode("utf-8"),
        prev_hash=base64.b64decode(item.get("prev_hash") or ""),  # a format-2 entry's leaf does not need it
        payload=None if item["payload"] is None else item["payload"].encode("utf-8"),
        path=[base64.b64decode(node) for node in item["path"]],
    )


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _reads_answer(method: _Method) -> _Method:
    """Turn an answer that is not a flowledger receiver's (not JSON, or without the fields it reads) into one
    clear ReceiverError: ``--url`` may name some other server. (A path below a receiver's address gets the
    receiver's own 404s: reads of a run say it is not there, listings fail here.)"""

    @functools.wraps(method)
    def read(self: UrlSource, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ReceiverError(_not_a_receiver(self.shown, _shape_error(exc))) from None

    return read  # type: ignore[return-value]


def _not_a_receiver(url: str, what: str) -> str:
    return f"{url} did not answer as a flowledger receiver does ({what}); is --url a flowledger receiver's address?"


def _shape_error(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return "the answer is not JSON"
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} in the answer" if exc.args else "a field is missing from the answer"
    return f"an unexpected answer: {exc}"


_URL_EXAMPLE: Final = "http://127.0.0.1:4318"


class UrlSource:
    """Calls a running receiver's HTTP API."""

    def __init__(self, url: str, api_key: str | None = None, *, origin: str = "--url") -> None:
        """``origin``: where ``url`` came from (``--url`` or ``FLOWLEDGER_ENDPOINT``), as an error names it."""
        self.url = url.strip().rstrip("/")  # blanks around it are read as the SDK reads FLOWLEDGER_ENDPOINT
        self.shown = masked(self.url)
        """The URL as messages show it: its user part and every query value replaced by ``***`` (all of it, when a
        password holding an unescaped ``/ ? #`` leaves no telling where the host starts)."""
        problem = url_problem(self.url)  # the SDK's rule for FLOWLEDGER_ENDPOINT: it never quotes a part of the URL
        if problem is not None:
            raise UsageError(
                f"{origin} {self.shown} is not a receiver's base URL: it must be {problem}; "
                f"give one like {_URL_EXAMPLE}"
            )
        self._origin = origin
        try:
            httpx.URL(self.url)  # what httpx alone refuses (an IDNA 2008 host, bytes that are not UTF-8)
        except (httpx.InvalidURL, UnicodeError):
            raise self._unsendable() from None
        if api_key is not None:
            check_api_key(api_key, origin="the API key")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self._headers, timeout=REQUEST_TIMEOUT_S)

    def _request(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        try:
            with self._client() as client:
                response = client.request(method, path, params=params, json=body)
        except httpx.HTTPError as exc:
            raise ReceiverError(f"cannot reach the receiver at {self.shown}: {exc}") from None
        except (httpx.InvalidURL, UnicodeError):  # what httpx refuses only when sending: its text may quote a secret
            raise self._unsendable() from None
        return self._checked(response, method, path)

    def _unsendable(self) -> UsageError:
        return UsageError(
            f"{self._origin} {self.shown} is not a URL a request can be sent to; give one like {_URL_EXAMPLE}"
        )

    def _checked(self, response: httpx.Response, method: str, path: str) -> httpx.Response:
        """``response``, unless it is an error other than the receiver's 404 (ReceiverError, AmbiguousRunError)."""
        if response.status_code == 409:  # a run id several projects use, named without one: as --db says it
            raise AmbiguousRunError(f"the receiver at {self.shown} answered 409: {_error_text(response)}")
        _refuse_bad_request(response, self.shown)
        if response.status_code >= 400 and response.status_code != 404:
            answer = f"answered {response.status_code}: {_error_text(response)}"
            raise ReceiverError(f"the receiver at {self.shown} {answer}")
        if response.status_code == 404 and not _is_receiver_error(response):
            raise ReceiverError(_not_a_receiver(self.shown, f"{method} {path} answered 404, not the receiver's error"))
        return response

    @staticmethod
    def _params(query: RunQuery) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": query.limit, "offset": query.offset}
        if query.workflow_id is not None:
            params["workflow_id"] = query.workflow_id
        if query.statuses:
            params["status"] = [status.value for status in query.statuses]
        if query.cursor is not None:
            params["cursor"] = query.cursor.encode()
        if query.search is not None:
            params["q"] = query.search
        for key, value in query.attributes:
            params.setdefault(f"attr.{key}", []).append(value)
        params.update(query.context.as_params())
        return params

    @_reads_answer
    def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs."""
        body = self._request("GET", "/api/runs", self._params(query)).json()
        token = body.get("next")
        return RunPage(
            runs=body["runs"],
            total=body["total"],
            total_capped=bool(body.get("total_capped")),
            next=None if token is None else RunPageCursor.decode(token),
        )

    @_reads_answer
    def get_run(self, run_id: str, project: str | None = None) -> dict[str, Any] | None:
        """One run with its nodes, or None."""
        scope = None if project is None else {"project": project}
        response = self._request("GET", f"/api/runs/{_segment(run_id)}", scope)
        if response.status_code == 404:
            return None
        return _object(response, "run_id", "nodes")

    @_reads_answer
    def attempt_logs(
        self, run_id: str, span_id: str, after_id: int, project: str | None = None
    ) -> dict[str, Any] | None:
        """A page of one attempt's log lines from ``GET /api/runs/{run_id}/attempts/{span_id}/logs``, or None."""
        scope = {} if project is None else {"project": project}
        path = f"/api/runs/{_segment(run_id)}/attempts/{_segment(span_id)}/logs"
        response = self._request("GET", path, {"after": after_id, **scope})
        if response.status_code == 404:
            return None
        return _object(response)

    @_reads_answer
    def error_groups(self, query: ErrorGroupQuery) -> list[dict[str, Any]]:
        """Error groups from ``GET /api/errors``."""
        params: dict[str, Any] = {"limit": query.limit}
        for name in ("workflow_id", "since", "until"):
            value = getattr(query, name)
            if value is not None:
                params[name] = value
        groups: list[dict[str, Any]] = self._request("GET", "/api/errors", params).json()["groups"]
        return groups

    @_reads_answer
    def run_stats(self, query: StatsQuery) -> list[dict[str, Any]]:
        """Statistics from ``GET /api/stats``."""
        params: dict[str, Any] = {"by": query.by.value, "limit": query.limit}
        for name in ("since", "until"):
            value = getattr(query, name)
            if value is not None:
                params[name] = value
        if query.bucket is not None:
            params["bucket"] = query.bucket.value
        groups: list[dict[str, Any]] = self._request("GET", "/api/stats", params).json()["groups"]
        return groups

    @_reads_answer
    def custom_metrics(self, query: CustomMetricQuery) -> list[dict[str, Any]]:
        """Custom metric totals from ``GET /api/metrics/custom``."""
        params: dict[str, Any] = {"limit": query.limit}
        for name in ("name", "workflow_id", "node_id", "since", "until"):
            value = getattr(query, name)
            if value is not None:
                params[name] = value
        if query.labels:
            params["label"] = [f"{name}={value}" for name, value in query.labels.items()]
        rows: list[dict[str, Any]] = self._request("GET", "/api/metrics/custom", params).json()["metrics"]
        return rows

    def export(self, query: RunQuery, fmt: ExportFormat) -> Iterator[bytes]:
        """The body of ``GET /api/export`` as it streams in, byte for byte: never split into lines here, since a
        CSV cell or a JSON string may hold what a line splitter takes for a line end (CR, U+2028, NEL, ...)."""
        params = self._params(query)
        del params["limit"], params["offset"]
        params["format"] = fmt.value
        try:
            with self._client() as client, client.stream("GET", "/api/export", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    _refuse_bad_request(response, self.shown)
                    if response.status_code == 404 and not _is_receiver_error(response):
                        raise ReceiverError(_not_a_receiver(self.shown, "GET /api/export answered 404"))
                    raise ReceiverError(
                        f"the receiver at {self.shown} answered {response.status_code}: {_error_text(response)}"
                    )
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                if kind != MEDIA_TYPES[fmt].split(";")[0]:  # some other server's page, not an export to write out
                    raise ReceiverError(_not_a_receiver(self.shown, f"GET /api/export answered {kind or 'no type'}"))
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise ReceiverError(f"cannot reach the receiver at {self.shown}: {exc}") from None

    @_reads_answer
    def verify(self, checkpoints: Sequence[tuple[int, str]]) -> VerifyReport:
        """The receiver walks its chain (and checks the checkpoints)."""
        params = {"checkpoint": [f"{seq}:{digest}" for seq, digest in checkpoints]}
        body = self._request("GET", "/api/verify", params).json()
        return VerifyReport(**body)

    @_reads_answer
    def rebuild(self) -> Drift:
        """Ask the receiver to refold its projections."""
        body = self._request("POST", "/api/rebuild").json()
        body.pop("clean", None)
        return Drift(**body)

    def import_jsonl(self, path: Path) -> ImportReport:  # its own reading of the answers: a bad line is local
        """Post the events in batches to ``/v1/events``; the receiver stores each ``event_id`` once."""
        import gzip

        report = ImportReport()
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        with self._client() as client:
            for chunk in read_jsonl(path, report):
                events = b",".join(line.text for line in chunk)  # each line as written: read_jsonl checked it
                body = gzip.compress(b'{"events":[' + events + b"]}", compresslevel=1)
                try:
                    response = client.post("/v1/events", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    raise ReceiverError(
                        f"cannot reach the receiver at {self.shown}: {exc}; "
                        f"{report.accepted} events were stored before (running import again is safe)"
                    ) from None
                if response.status_code >= 400:
                    raise ReceiverError(
                        f"the receiver at {self.shown} answered {response.status_code}: {_error_text(response)}; "
                        f"{report.accepted} events were stored before (running import again is safe)"
                    )
                try:
                    answer = _object(response, "accepted")
                    report.accepted += int(answer["accepted"])
                    report.duplicates += int(answer.get("duplicates", 0))
                    for item in answer.get("rejected", []):
                        index = item.get("index")
                        line = chunk[index].number if isinstance(index, int) and 0 <= index < len(chunk) else None
                        report.rejected.append({"line": line, "error": item.get("error")})
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise ReceiverError(
                        f"{_not_a_receiver(self.shown, _shape_error(exc))}; "
                        f"{report.accepted} events were stored before (running import again is safe)"
                    ) from None
        return report

    @_reads_answer
    def tree_head(self) -> TreeHead:
        """``GET /api/tree``: the receiver's tree size and root (to sign here, with a key it never sees)."""
        body = self._request("GET", "/api/tree").json()
        return TreeHead(int(body["size"]), base64.b64decode(body["root"]))

    @_reads_answer
    def consistency_proof(self, old_size: int) -> tuple[TreeHead, list[bytes]]:
        """``GET /api/tree/consistency``: the head and a proof the caller checks against its checkpoint."""
        body = self._request("GET", "/api/tree/consistency", {"from": old_size}).json()
        head = TreeHead(int(body["size"]), base64.b64decode(body["root"]))
        return head, [base64.b64decode(node) for node in body["path"]]

    @_reads_answer
    def run_proof(self, run_id: str, tree_size: int, project: str | None = None) -> list[EntryProof]:
        """``GET /api/tree/runs/{run_id}``: the run's entries with audit paths ([] when it has none)."""
        scope = {} if project is None else {"project": project}
        response = self._request("GET", f"/api/tree/runs/{_segment(run_id)}", {"size": tree_size, **scope})
        if response.status_code == 404:
            return []
        return [_entry_proof(item) for item in response.json()["entries"]]

    @_reads_answer
    def each_run_proof(
        self, run_id: str, tree_size: int, each: Callable[[list[EntryProof]], None], project: str | None = None
    ) -> None:
        """``GET /api/tree/runs/{run_id}`` read as it arrives, handed to ``each`` a chunk of entries at a time."""
        params: dict[str, str | int] = {"size": tree_size}
        if project is not None:
            params["project"] = project
        try:
            with (
                self._client() as client,
                client.stream("GET", f"/api/tree/runs/{_segment(run_id)}", params=params) as response,
            ):
                if response.status_code >= 400:
                    response.read()
                    self._checked(response, "GET", "/api/tree/runs")
                    return  # a 404: the run has no entry there
                decoder = codecs.getincrementaldecoder("utf-8")()
                pieces = response.iter_bytes()

                def read() -> str:
                    for piece in pieces:
                        text = decoder.decode(piece)
                        if text:
                            return text
                    return decoder.decode(b"", final=True)

                chunk: list[EntryProof] = []
                for item in iter_entries(read):
                    chunk.append(_entry_proof(item))
                    if len(chunk) == _PROOF_CHUNK:
                        each(chunk)
                        chunk = []
                if chunk:
                    each(chunk)
        except httpx.HTTPError as exc:
            raise ReceiverError(f"cannot reach the receiver at {self.shown}: {exc}") from None

    @_reads_answer
    def coverage(self, query: CoverageQuery) -> CoverageReport:
        """``GET /api/coverage`` (the receiver decides with its own clock and stuck threshold)."""
        params = {"since": query.since, "workflow_id": query.workflow_id}
        response = self._request("GET", "/api/coverage", {k: v for k, v in params.items() if v is not None})
        return CoverageReport.from_json(self._found(response, "/api/coverage"))

    @_reads_answer
    def reconcile(self, *, repair: bool) -> ReconcileReport:
        """``GET /api/reconcile`` slice by slice (``POST`` to repair), the slices' findings added up."""
        report = ReconcileReport()
        after: str | None = ""
        while after is not None:  # one slice per request, each short however large the ledger
            response = self._request("POST" if repair else "GET", "/api/reconcile", {"after": after} if after else None)
            report.merge(ReconcileReport.from_json(self._found(response, "/api/reconcile")))
            after = report.sweep_next
        return report

    def _found(self, response: httpx.Response, route: str) -> dict[str, Any]:
        """The JSON body of a route's answer; ReceiverError when the receiver does not serve the route."""
        if response.status_code == 404:
            raise ReceiverError(f"the receiver at {self.shown} has no {route}; upgrade it, or pass --db")
        return _object(response)

    @_reads_answer
    def purge(self, selection: PurgeSelection) -> PurgeReport:
        """``DELETE /api/runs/{id}`` for listed runs, ``POST /api/purge`` for a workflow."""
        if selection.run_ids:
            runs: list[str] = []
            events, last = 0, None
            scope = None if selection.project is None else {"project": selection.project}
            for run_id in selection.run_ids:
                response = self._request("DELETE", f"/api/runs/{_segment(run_id)}", scope)
                if response.status_code == 404:
                    continue
                one = response.json()
                runs += one["runs"]
                events += one["events"]
                last = one["purge_seq"]
            return PurgeReport(runs=sorted(runs), events=events, purge_seq=last)
        request = {"workflow_id": selection.workflow_id, "before": selection.before}
        answer = self._request("POST", "/api/purge", body={k: v for k, v in request.items() if v is not None}).json()
        return PurgeReport(runs=answer["runs"], events=answer["events"], purge_seq=answer["purge_seq"])


def _object(response: httpx.Response, *fields: str) -> dict[str, Any]:
    """The answer's JSON object, holding ``fields``; TypeError when it is some other JSON value, KeyError when a
    field is missing (ValueError when it is not JSON)."""
    body = response.json()
    if not isinstance(body, dict):
        raise TypeError(f"a JSON {type(body).__name__} where an object was expected")
    missing = next((name for name in fields if name not in body), None)
    if missing is not None:
        raise KeyError(missing)
    return body


def _refuse_bad_request(response: httpx.Response, shown: str) -> None:
    """A UsageError (exit 2, as ``--db`` refuses the same values) for the receiver's own 400: it is about what the
    command was given, a parameter or a body the API refuses."""
    if response.status_code == 400 and _is_receiver_error(response):
        raise UsageError(f"the receiver at {shown} refused the request: {_error_text(response)}")


def _is_receiver_error(response: httpx.Response) -> bool:
    """Whether an error answer is the receiver's own: a JSON object with an ``error`` text."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str)


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except (json.JSONDecodeError, AttributeError):
        return " ".join(response.text[:200].split())  # one line, whatever the server sent


def _segment(value: str) -> str:
    """``value`` as one path segment of a URL: an id holding ``/``, ``?`` or ``#`` names that id, not another
    route or a query. A segment ``.`` or ``..`` is spelt with ``%2E``: as it is, a URL's path drops it (or the
    segment before it), and the request would reach another route (``/api/runs``) rather than say there is no
    such run. (An empty id is refused before, by the command's arguments.)"""
    segment = quote(value, safe="")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment
