"""The CLI's two ways to reach runs: a database file, or a running receiver.

:class:`DbSource` opens the SQLite file (read-only for queries) and
:class:`UrlSource` calls the HTTP API; both answer the same questions, so
every CLI command works on ``--db`` and ``--url`` alike.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import httpx

from flowledger._exceptions import ReceiverError, StoreError
from flowledger.receiver.api._export import ExportFormat, export_lines
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

__all__ = ["DbSource", "Source", "UrlSource"]

REQUEST_TIMEOUT_S: Final = 30.0
T = TypeVar("T")


class Source(Protocol):
    """Where the CLI reads runs from."""

    def list_runs(self, query: RunQuery) -> RunPage: ...
    def get_run(self, run_id: str) -> dict[str, Any] | None: ...
    def export(self, query: RunQuery, fmt: ExportFormat) -> Iterator[str]: ...
    def verify(self, checkpoints: Sequence[tuple[int, str]]) -> VerifyReport: ...
    def rebuild(self) -> Drift: ...
    def purge(self, selection: PurgeSelection) -> PurgeReport: ...
    def tree_head(self) -> TreeHead: ...
    def consistency_proof(self, old_size: int) -> tuple[TreeHead, list[bytes]]: ...
    def run_proof(self, run_id: str, tree_size: int) -> list[EntryProof]: ...


class DbSource:
    """Reads (and for rebuild, writes) a database file directly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _run(self, work: Callable[[Store], Coroutine[Any, Any, T]], *, write: bool = False) -> T:
        if not self.path.exists():
            raise StoreError(f"there is no database at {self.path}; pass --db PATH of a flowledger database")

        async def main() -> T:
            store = SqliteStore(self.path, readers=1, readonly=not write)
            await store.open()
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(main())

    def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs."""
        return self._run(lambda store: store.list_runs(query))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run with its nodes."""
        return self._run(lambda store: store.get_run(run_id))

    def export(self, query: RunQuery, fmt: ExportFormat) -> Iterator[str]:
        """Rendered lines, produced chunk by chunk on a private event loop."""
        if not self.path.exists():
            raise StoreError(f"there is no database at {self.path}; pass --db PATH of a flowledger database")
        loop = asyncio.new_event_loop()
        store = SqliteStore(self.path, readers=1, readonly=True)
        try:
            loop.run_until_complete(store.open())
            lines = export_lines(store.iter_runs(query, with_nodes=fmt is ExportFormat.JSONL), fmt)
            while True:
                try:
                    yield loop.run_until_complete(anext(lines))
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

    def purge(self, selection: PurgeSelection) -> PurgeReport:
        """Erase runs from the file (a second writer beside a running receiver is safe)."""
        return self._run(lambda store: store.purge(selection), write=True)

    def tree_head(self) -> TreeHead:
        """The Merkle tree's size and root."""
        return self._run(lambda store: store.tree_head())

    def consistency_proof(self, old_size: int) -> tuple[TreeHead, list[bytes]]:
        """The head and the consistency proof from ``old_size``."""
        return self._run(lambda store: store.consistency_proof(old_size))

    def run_proof(self, run_id: str, tree_size: int) -> list[EntryProof]:
        """A run's entries with audit paths in the tree of ``tree_size``."""
        return self._run(lambda store: store.run_proof(run_id, tree_size))


class UrlSource:
    """Calls a running receiver's HTTP API."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
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
            raise ReceiverError(f"cannot reach the receiver at {self.url}: {exc}") from None
        if response.status_code >= 400 and response.status_code != 404:
            raise ReceiverError(f"the receiver at {self.url} answered {response.status_code}: {_error_text(response)}")
        return response

    @staticmethod
    def _params(query: RunQuery) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": query.limit, "offset": query.offset}
        if query.workflow_id is not None:
            params["workflow_id"] = query.workflow_id
        if query.status is not None:
            params["status"] = query.status.value
        return params

    def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs."""
        body = self._request("GET", "/api/runs", self._params(query)).json()
        return RunPage(runs=body["runs"], total=body["total"])

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run with its nodes, or None."""
        response = self._request("GET", f"/api/runs/{run_id}")
        if response.status_code == 404:
            return None
        run: dict[str, Any] = response.json()
        return run

    def export(self, query: RunQuery, fmt: ExportFormat) -> Iterator[str]:
        """Lines streamed from ``GET /api/export``."""
        params = self._params(query)
        del params["limit"], params["offset"]
        params["format"] = fmt.value
        try:
            with self._client() as client, client.stream("GET", "/api/export", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ReceiverError(
                        f"the receiver at {self.url} answered {response.status_code}: {_error_text(response)}"
                    )
                for line in response.iter_lines():
                    yield line + "\n"
        except httpx.HTTPError as exc:
            raise ReceiverError(f"cannot reach the receiver at {self.url}: {exc}") from None

    def verify(self, checkpoints: Sequence[tuple[int, str]]) -> VerifyReport:
        """The receiver walks its chain (and checks the checkpoints)."""
        params = {"checkpoint": [f"{seq}:{digest}" for seq, digest in checkpoints]}
        body = self._request("GET", "/api/verify", params).json()
        return VerifyReport(**body)

    def rebuild(self) -> Drift:
        """Ask the receiver to refold its projections."""
        body = self._request("POST", "/api/rebuild").json()
        body.pop("clean", None)
        return Drift(**body)

    def tree_head(self) -> TreeHead:
        """``GET /api/tree``: the receiver's tree size and root (to sign here, with a key it never sees)."""
        body = self._request("GET", "/api/tree").json()
        return TreeHead(int(body["size"]), base64.b64decode(body["root"]))

    def consistency_proof(self, old_size: int) -> tuple[TreeHead, list[bytes]]:
        """``GET /api/tree/consistency``: the head and a proof the caller checks against its checkpoint."""
        body = self._request("GET", "/api/tree/consistency", {"from": old_size}).json()
        head = TreeHead(int(body["size"]), base64.b64decode(body["root"]))
        return head, [base64.b64decode(node) for node in body["path"]]

    def run_proof(self, run_id: str, tree_size: int) -> list[EntryProof]:
        """``GET /api/tree/runs/{run_id}``: the run's entries with audit paths ([] when it has none)."""
        response = self._request("GET", f"/api/tree/runs/{run_id}", {"size": tree_size})
        if response.status_code == 404:
            return []
        return [
            EntryProof(
                seq=int(item["seq"]),
                entry=item["entry"].encode("utf-8"),
                payload=None if item["payload"] is None else item["payload"].encode("utf-8"),
                path=[base64.b64decode(node) for node in item["path"]],
            )
            for item in response.json()["entries"]
        ]

    def purge(self, selection: PurgeSelection) -> PurgeReport:
        """``DELETE /api/runs/{id}`` for listed runs, ``POST /api/purge`` for a workflow."""
        if selection.run_ids:
            runs: list[str] = []
            events, last = 0, None
            for run_id in selection.run_ids:
                response = self._request("DELETE", f"/api/runs/{run_id}")
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


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except (json.JSONDecodeError, AttributeError):
        return response.text[:200]
