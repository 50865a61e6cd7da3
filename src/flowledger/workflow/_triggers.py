"""How runs of a generated workflow start: command line, HTTP, schedule.

- :func:`main` is the generated module's ``__main__``: ``--input JSON`` (or
  ``@file.json``) runs once and prints the output as JSON; ``--dry-run``
  simulates effects; ``--serve`` runs the schedule loop (schedule trigger)
  or an HTTP server (http trigger). It does not wait for the run's records
  itself: the SDK's exit hook sends what it can within ``exit_flush_s``
  (0.3 s by default) and spools the rest for a later process, exactly as for
  a hand-instrumented program, so a receiver that accepts connections but
  never answers holds the exit no longer. Called in-process, ``main``
  leaves the records to the background sender (``flowledger.flush()``
  waits for them).
- :func:`http_app` is the ASGI app of an http-triggered workflow: ``POST``
  on its path runs the workflow on the JSON body, continuing the caller's
  W3C trace, and answers with the output (400 for a body that is not JSON,
  500 with the run id when the run fails). Starlette is imported on the
  first request, so importing a generated module stays cheap.
- :func:`serve_schedule` starts a run every ``every_s`` seconds (or at each
  time a cron expression matches, in UTC) and never
  overlaps runs unless asked: a run that overruns its slot delays the next
  one rather than stacking them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from flowledger._exceptions import ConfigError, ResumeRefused, RunAborted
from flowledger._run_context import run_id_from_baggage
from flowledger._wire import MARKER_KEY, RESUME_APP_PATH, AbortReason, RunStatus, TriggerType
from flowledger.instrument import flush
from flowledger.instrument.capture import INT_MAX, INT_MIN, clean_str, to_jsonable
from flowledger.workflow._execute import RunResult, execute_run
from flowledger.workflow._resume import ResumePlan, fetch_evidence, plan_resume, resume_source
from flowledger.workflow._spec import HttpTrigger, Schedule, Workflow
from flowledger.workflow.executors._base import EXECUTOR_ENV, EXECUTORS, Executor, executor_named

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "http_app",
    "main",
    "next_cron_time",
    "serve_schedule",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
MAX_HTTP_BODY_BYTES: Final = 10 * 1024 * 1024
DEFAULT_HTTP_HOST: Final = "127.0.0.1"
DEFAULT_HTTP_PORT: Final = 8000
MAX_PORT: Final = 65535
HTTP_EXTRA_HINT: Final = "pip install 'flowledger[receiver]'"
TOO_DEEP: Final = "is nested too deeply to read as JSON: flatten it"
"""Said of input whose arrays or objects nest deeper than the JSON parser's recursion allows."""
RESUME_FLUSH_S: Final = 5.0
"""How long a resume through the http app waits for the new run's records to be sent before answering."""
MAX_SCHEDULE_SLEEP_S: Final = 60.0
"""The schedule loop re-reads the clock at least this often (the wall clock may jump)."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _BadInput(Exception):
    pass


class _NotJSONNumber(ValueError):
    """A number Python's JSON parser takes but JSON has not: ``NaN``, ``Infinity``, ``-Infinity``, or past a float."""


def _no_constant(name: str) -> Any:
    raise _NotJSONNumber(f"{name} is not a JSON number (JSON has no NaN or infinity)")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _NotJSONNumber(f"the number {text} is past a float's range (about ±1.8e308)")
    return number


def _strict_loads(text: str | bytes) -> Any:
    """``json.loads`` refusing what is not JSON although Python's parser takes it (ValueError saying which).

    ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259), and a number past a float's range such as
    ``1e999`` would reach the nodes as an infinity: both are refused rather than run. RecursionError as ``json``.
    """
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)


def _read_input(text: str | None) -> Any:
    if text is None:
        return None
    source = "--input"
    if text == "-":
        source = "standard input"
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise _BadInput(f"standard input {_undecodable(exc)}") from None
    elif text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise _BadInput(f"cannot read the input file {source}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:  # a ValueError, not an OSError: JSON is UTF-8 text (RFC 8259)
            raise _BadInput(f"the input file {source} {_undecodable(exc)}") from None
    try:
        return _strict_loads(text)
    except ValueError as exc:
        raise _BadInput(f"{source} is not valid JSON: {exc}") from None
    except RecursionError:
        raise _BadInput(f"{source} {TOO_DEEP}") from None


def _undecodable(exc: UnicodeDecodeError) -> str:
    """What is wrong with undecodable input, e.g. ``is not UTF-8 text (byte 0xff at offset 3)``."""
    return f"is not {exc.encoding.upper()} text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def _port(text: str) -> int:
    """A TCP port to bind, 1 to 65535: argparse turns anything else into a usage error (exit 2).

    Checked here because uvicorn does not: an out-of-range port made it hang silently, serving nothing;
    0 (a port the system picks) is refused too, since the module does not print which one it got.
    """
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1 to {MAX_PORT})") from None
    if not 1 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{port} is not a port number: use 1 to {MAX_PORT}")
    return port


def _runs(text: str) -> int:
    """``--max-runs``: a count of runs, 1 or more (argparse turns anything else into a usage error, exit 2)."""
    try:
        runs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of runs (1 or more)") from None
    if runs < 1:
        raise argparse.ArgumentTypeError(f"{runs} runs would run nothing: use 1 or more, or leave it out to run on")
    return runs


def _bad_host(host: str, port: int) -> str | None:
    """What is wrong with ``--host`` as an address to bind (None when it resolves), said before uvicorn tries it."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError; UnicodeError: an unencodable name
        return f"--host {host!r} is not an address or host name to bind: {getattr(exc, 'strerror', None) or exc}"
    return None


def _parser(workflow: Workflow, prog: str | None) -> argparse.ArgumentParser:
    title = workflow.name or workflow.id
    description = f"Run the workflow {title!r} ({workflow.id})."
    if "%(prog)" in description:  # argparse then %-formats the whole text: a name's other `%` must not be read
        description = description.replace("%", "%%")
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--input",
        metavar="JSON",
        help="the trigger payload as JSON, @FILE to read it from a file, or - to read standard input",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="simulate the effect nodes instead of running them (with --serve: in every run it starts)",
    )
    parser.add_argument(
        "--serve", action="store_true", help="schedule trigger: run every interval; http trigger: serve the app"
    )
    parser.add_argument(
        "--max-runs", type=_runs, metavar="N", help="with --serve on a schedule: stop after N runs (1 or more)"
    )
    parser.add_argument(
        "--overlap", action="store_true", help="with --serve on a schedule: start runs on time even if one is running"
    )
    parser.add_argument("--host", default=DEFAULT_HTTP_HOST, help="with --serve on http: address to bind")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_HTTP_PORT, help=f"with --serve on http: port to bind (1 to {MAX_PORT})"
    )
    parser.add_argument(
        "--executor",
        metavar="NAME",
        default=None,
        help=f"where node attempts run: {', '.join(sorted(EXECUTORS))} [default: ${EXECUTOR_ENV}, else local]",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="resume that run: reuse the recorded outputs of the nodes that succeeded, run the rest onward",
    )
    parser.add_argument(
        "--from", dest="from_node", metavar="NODE", help="with --resume: run this node and those below it again too"
    )
    parser.add_argument(
        "--repeat-effects",
        action="store_true",
        help="with --resume: run effects again even when they already succeeded on the same input",
    )
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        default=None,
        help="with --resume: the receiver to read the run from [default: $FLOWLEDGER_ENDPOINT]",
    )
    parser.add_argument(
        "--project",
        metavar="NAME",
        default=None,
        help="with --resume: the run of this project, when its id is used in several (runs are per project)",
    )
    return parser


def _plan(workflow: Workflow, args: argparse.Namespace, payload: Any) -> ResumePlan:
    """The resume plan of ``--resume``: the run read from the receiver and checked (ResumeRefused if it cannot;
    ConfigError for an endpoint or API key that cannot be used)."""
    endpoint, api_key = resume_source(args.endpoint)
    evidence = fetch_evidence(endpoint, args.resume, api_key=api_key, project=args.project)
    return plan_resume(
        workflow,
        evidence,
        from_node=args.from_node,
        repeat_effects=args.repeat_effects,
        payload=payload,
        has_payload=args.input is not None,
    )


def main(workflow: Workflow, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """The command line of a generated module; returns the exit code."""
    args = _parser(workflow, prog).parse_args(argv)
    try:
        payload = _read_input(args.input)
    except _BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        executor = executor_named(args.executor)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if (args.from_node is not None or args.repeat_effects or args.project is not None) and args.resume is None:
        print("error: --from, --repeat-effects and --project go with --resume RUN_ID", file=sys.stderr)
        return EXIT_USAGE
    if args.resume is not None and args.serve:
        print("error: --resume runs once; it does not go with --serve", file=sys.stderr)
        return EXIT_USAGE
    unknown = _unknown_node(workflow, args.from_node)
    if unknown is not None:
        print(f"error: {unknown}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.serve:
            return _serve(workflow, args, payload, executor)
        plan = None
        if args.resume is not None:
            try:
                plan = _plan(workflow, args, payload)
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_USAGE
            except ResumeRefused as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_FAILED
            print(plan.describe(), file=sys.stderr)
        result = asyncio.run(_run_once(workflow, payload, dry_run=args.dry_run, executor=executor, resume=plan))
        return _report(workflow, result, sys.stdout, sys.stderr)
    except KeyboardInterrupt:  # before the run started or after it ended: nothing left to record
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED  # the contract has two outcomes: a run that was interrupted did not succeed


async def _run_once(
    workflow: Workflow, payload: Any, *, dry_run: bool, executor: Executor, resume: ResumePlan | None
) -> RunResult:
    """One run from the command line; SIGINT (Ctrl-C) during it aborts it as ``interrupted``, recorded."""
    interrupt = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, interrupt.set)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        installed = False
    try:
        return await execute_run(
            workflow,
            payload,
            dry_run=dry_run,
            trigger=TriggerType.MANUAL,
            executor=executor,
            resume=resume,
            interrupt=interrupt,
            raise_interrupt=not installed,  # SIGINT sets ``interrupt``: a node's own KeyboardInterrupt is reported
        )
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def _unknown_node(workflow: Workflow, node_id: str | None) -> str | None:
    """What is wrong with ``--from NODE`` when the workflow has no such node (None when it has).

    Known from the module alone, so it is a usage error found before the receiver is asked for the run.
    """
    known = [node.id for node in workflow.nodes]
    if node_id is None or node_id in known:
        return None
    return f"--from {node_id}: the workflow has no such node (its nodes: {', '.join(known)})"


def _run_label(result: RunResult) -> str:
    """``run ID``, or what to say of a run that has no id (flowledger is disabled)."""
    return f"run {result.run_id}" if result.run_id else "the run (not recorded)"


def _describe(result: RunResult) -> str:
    error = result.error
    what = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
    if result.status is RunStatus.ABORTED:
        return f"{_run_label(result)} was aborted: {what}"
    return f"{_run_label(result)} failed at node `{result.node_id}`: {what}"


_LONG_DIGITS: Final = re.compile(r"\d{19}")
"""Digits enough for an integer outside -2**63 to 2**64 - 1 (-2**63 - 1 has 19): where one may be."""


def _output_json(value: Any) -> str:
    """The run's output as JSON text; never raises.

    A value JSON holds is written as is (other types by ``str``); one it cannot
    (a cycle, a tuple key, NaN, a lone surrogate, an integer with too many digits,
    nesting too deep) is written as the SDK captures it, with its markers. An
    integer outside -2**63 to 2**64 - 1 is always written as the SDK's ``int``
    marker, whatever else the output holds: JSON tools do not agree on such
    numbers (JavaScript and many others round them), and the run's record holds it so.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
        if (text.isascii() or clean_str(text) is text) and not (
            _LONG_DIGITS.search(text) is not None and _holds_big_int(value)
        ):
            return text
    except (TypeError, ValueError, RecursionError):  # ValueError: cycles, NaN, str() of a huge int
        pass
    try:
        return json.dumps(to_jsonable(value), ensure_ascii=False, allow_nan=False)
    except Exception as exc:  # a __repr__ or model_dump that raises, say
        return json.dumps({MARKER_KEY: "capture_error", "type": type(value).__name__, "error": type(exc).__name__})


def _holds_big_int(value: Any) -> bool:
    """Whether ``value`` (which ``json.dumps`` wrote: no cycle) holds an integer outside the 64-bit range JSON tools
    share, as a value (a key is written as a string)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if not INT_MIN <= item <= INT_MAX:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _report(workflow: Workflow, result: RunResult, out: TextIO, err: TextIO) -> int:
    if result.status is RunStatus.SUCCEEDED:
        out.write(_output_json(result.output) + "\n")
        out.flush()
        return EXIT_OK
    err.write(f"workflow {workflow.id}: {_describe(result)}\n")
    if isinstance(result.error, RunAborted) and result.error.reason == AbortReason.INTERRUPTED:
        return EXIT_FAILED  # the contract has two outcomes: a run that was interrupted did not succeed
    return EXIT_FAILED


def _serve(workflow: Workflow, args: argparse.Namespace, payload: Any, executor: Executor) -> int:
    trigger = workflow.trigger
    if isinstance(trigger, Schedule):
        asyncio.run(
            serve_schedule(
                workflow,
                payload,
                max_runs=args.max_runs,
                overlap=args.overlap,
                dry_run=args.dry_run,
                log=sys.stderr,
                executor=executor,
            )
        )
        return EXIT_OK
    if isinstance(trigger, HttpTrigger):
        try:  # lazy: optional dependencies of the receiver extra, checked here so a missing one is one clear line
            import starlette  # noqa: F401
            import uvicorn
        except ImportError as exc:
            print(f"error: serving an http trigger needs {exc.name}: {HTTP_EXTRA_HINT}", file=sys.stderr)
            return EXIT_USAGE
        bad_host = _bad_host(args.host, args.port)
        if bad_host is not None:
            print(f"error: {bad_host}", file=sys.stderr)
            return EXIT_USAGE
        app = http_app(workflow, executor=executor, dry_run=args.dry_run)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return EXIT_OK
    print(
        f"error: workflow {workflow.id} has a manual trigger; --serve needs an http or schedule trigger",
        file=sys.stderr,
    )
    return EXIT_USAGE


# --- schedule ---------------------------------------------------------------


async def serve_schedule(
    workflow: Workflow,
    payload: Any = None,
    *,
    max_runs: int | None = None,
    overlap: bool = False,
    dry_run: bool = False,
    log: TextIO | None = None,
    executor: Executor | str | None = None,
) -> list[RunResult]:
    """Start a run every ``every_s`` seconds until SIGINT/SIGTERM or ``max_runs``; return the results."""
    if not isinstance(workflow.trigger, Schedule):
        raise TypeError(f"workflow {workflow.id} has no schedule trigger")
    schedule = workflow.trigger
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    results: list[RunResult] = []
    running: set[asyncio.Task[RunResult]] = set()

    async def one() -> RunResult:
        result = await execute_run(
            workflow,
            payload,
            dry_run=dry_run,
            trigger=TriggerType.SCHEDULE,
            executor=executor,
            raise_interrupt=signal.SIGINT not in installed,  # with its handler, SIGINT stops the serving, not a node
        )
        results.append(result)
        if log is not None:
            ok = result.status is RunStatus.SUCCEEDED
            line = f"workflow {workflow.id}: {_run_label(result)} {result.status.value}" if ok else _describe(result)
            log.write(line)
            log.write("\n")
            log.flush()
        return result

    try:
        next_at = time.time() if schedule.cron is None else next_cron_time(schedule.cron, time.time())
        started = 0
        while not stop.is_set() and (max_runs is None or started < max_runs):
            wait_s = next_at - time.time()
            if wait_s > 0:
                try:
                    await asyncio.wait_for(stop.wait(), min(wait_s, MAX_SCHEDULE_SLEEP_S))
                except TimeoutError:
                    pass
                continue
            started += 1
            if overlap:
                task = asyncio.create_task(one())
                running.add(task)
                task.add_done_callback(running.discard)
            else:
                await one()
            # Without --overlap a run that overran its slot delays the next one; missed slots are not made up.
            after = next_at if overlap else max(next_at, time.time())
            if schedule.cron is not None:
                next_at = next_cron_time(schedule.cron, after)
            else:
                assert schedule.every_s is not None
                next_at = next_at + schedule.every_s if overlap else max(next_at + schedule.every_s, time.time())
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return results


def next_cron_time(expression: str, after: float) -> float:
    """The first time (epoch seconds) strictly after ``after`` that the cron ``expression`` matches, in UTC."""
    try:  # lazy: cronsim is an optional dependency (the codegen extra), needed only by cron schedules
        from cronsim import CronSim
    except ImportError:  # pragma: no cover - cronsim ships with the codegen extra
        raise ConfigError("cron schedules need the cronsim package: pip install 'flowledger[codegen]'") from None
    start = datetime.fromtimestamp(after, UTC).replace(microsecond=0)
    return next(CronSim(expression, start)).timestamp()


# --- http -------------------------------------------------------------------


class _LazyApp:
    """An ASGI app that builds the Starlette app on first use."""

    def __init__(self, workflow: Workflow, executor: Executor | str | None = None, *, dry_run: bool = False) -> None:
        self.workflow = workflow
        self.executor = executor
        self.dry_run = dry_run
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = _build_app(self.workflow, self.executor, dry_run=self.dry_run)
        await self._app(scope, receive, send)


def http_app(
    workflow: Workflow, *, executor: Executor | str | None = None, dry_run: bool = False
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app of an http-triggered workflow: ``POST <path>`` runs it once (on ``executor``).

    ``dry_run``: every run is a dry run (``--serve --dry-run``); otherwise a request asks for one with ``?dry_run=1``.
    """
    if not isinstance(workflow.trigger, HttpTrigger):
        raise TypeError(f"workflow {workflow.id} has no http trigger")
    return _LazyApp(workflow, executor, dry_run=dry_run)


def _build_app(
    workflow: Workflow, executor: Executor | str | None = None, *, dry_run: bool = False
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    # lazy: starlette is an optional dependency (the receiver extra); importing a generated module stays cheap
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise ConfigError(f"the http trigger's app needs starlette: {HTTP_EXTRA_HINT}") from None
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    assert isinstance(workflow.trigger, HttpTrigger)

    def problem(status: int, message: str, **extra: Any) -> Response:
        return JSONResponse({"error": {"message": message, **extra}}, status_code=status)

    async def start_run(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_HTTP_BODY_BYTES:
            return problem(413, f"the request body is larger than {MAX_HTTP_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_HTTP_BODY_BYTES:
            return problem(413, f"the request body is larger than {MAX_HTTP_BODY_BYTES} bytes")
        try:
            payload = _strict_loads(body) if body.strip() else None
        except ValueError as exc:
            return problem(400, f"the request body is not valid JSON: {exc}")
        except RecursionError:
            return problem(400, f"the request body {TOO_DEEP}")
        asked = request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")
        result = await execute_run(
            workflow,
            payload,
            dry_run=dry_run or asked,
            trigger=TriggerType.HTTP,
            traceparent=request.headers.get("traceparent"),
            executor=executor,
            parent_run_id=run_id_from_baggage(request.headers.get("baggage")),
            raise_interrupt=False,  # the server handles SIGINT: a node's own KeyboardInterrupt is this run's 500
        )
        headers = {"x-flowledger-run-id": result.run_id} if result.run_id else {}
        if result.status is RunStatus.SUCCEEDED:
            content = _output_json(result.output)
            return Response(content, media_type="application/json", headers=headers)
        error = result.error
        return JSONResponse(
            {
                "error": {
                    "type": type(error).__name__ if error is not None else None,
                    "message": str(error) if error is not None else None,
                    "node_id": result.node_id,
                },
                "status": result.status.value,
                "run_id": result.run_id,
            },
            status_code=500,
            headers=headers,
        )

    async def resume(request: Request) -> Response:
        """``POST {"run_id": ID, "project": NAME?, "from": NODE?}``: resume one of this workflow's runs (the viewer's
        button, through the receiver, which names the run's project)."""
        try:
            body = _strict_loads(await request.body())
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("run_id"), str):
            return JSONResponse({"error": 'the body must be {"run_id": "...", "from": NODE}'}, status_code=400)
        from_node = body.get("from")
        project = body.get("project")
        try:
            endpoint, api_key = resume_source()
            evidence = await asyncio.to_thread(
                fetch_evidence,
                endpoint,
                body["run_id"],
                api_key=api_key,
                project=project if isinstance(project, str) else None,
            )
            plan = plan_resume(workflow, evidence, from_node=from_node if isinstance(from_node, str) else None)
        except ConfigError as exc:  # the app's own settings: not the asker's fault
            return JSONResponse({"error": f"the workflow app cannot resume runs: {exc}"}, status_code=500)
        except ResumeRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        result = await execute_run(
            workflow,
            None,
            dry_run=dry_run,
            trigger=TriggerType.HTTP,
            executor=executor,
            resume=plan,
            raise_interrupt=False,
        )
        # The answer names the new run: send its records first, so that whoever asked can open it at once.
        await asyncio.to_thread(flush, RESUME_FLUSH_S)
        return JSONResponse({"run_id": result.run_id, "status": result.status.value})

    return Starlette(
        routes=[
            Route(workflow.trigger.path, start_run, methods=["POST"]),
            Route(RESUME_APP_PATH, resume, methods=["POST"]),
        ]
    )
