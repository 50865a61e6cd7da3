"""Log lines of node attempts: captured per attempt, bounded, deduplicated, redacted, invisible to the app."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import flowledger
from flowledger.instrument import ContextThreadPoolExecutor, in_context
from flowledger.instrument._logs import AttemptLogHandler, redact_text
from flowledger.testing import CapturedEvents

_log = logging.getLogger("tests.shop.steps")
_lib = logging.getLogger("tests.somelib.client")


class _Collect(logging.Handler):
    """The application's own handler: keeps every record it receives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def _loggers() -> Iterator[None]:
    """Let the test loggers make INFO records (a logger's own level filters before any handler)."""
    for logger in (_log, _lib):
        logger.setLevel(logging.DEBUG)
    yield
    for logger in (_log, _lib):
        logger.setLevel(logging.NOTSET)


def _logs_of(events: CapturedEvents, node_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events.of_kind("node_logs") if e["data"]["node_id"] == node_id]


def _messages(events: CapturedEvents, node_id: str) -> list[str]:
    return [r["message"] for data in _logs_of(events, node_id) for r in data["records"]]


def test_lines_land_on_their_attempt_with_level_logger_and_ids(events: CapturedEvents) -> None:
    """A node's lines (its own and a library's) are sent for its attempt, before its node_finished; others are not."""

    @flowledger.node
    def fetch() -> None:
        _log.info("fetching %s", "order 42")
        _lib.debug("below the default level")
        _lib.warning("slow answer")

    with flowledger.run("shop"):
        _log.info("in the run, outside any node")
        fetch()
    assert _messages(events, "fetch") == ["fetching order 42", "slow answer"]
    data = _logs_of(events, "fetch")[0]
    finished = events.nodes("fetch")[0]["data"]
    assert data["span_id"] == finished["span_id"]
    assert data["attempt"] == 1
    first, second = data["records"]
    assert (first["level"], first["level_name"], first["logger"]) == (20, "INFO", "tests.shop.steps")
    assert second["logger"] == "tests.somelib.client"
    assert first["trace_id"] == finished["trace_id"]
    assert first["span_id"] == finished["span_id"]
    kinds = [e["kind"] for e in events]
    assert kinds.index("node_logs") < kinds.index("node_finished")


def test_threads_and_concurrent_tasks_keep_their_own_attempt(events: CapturedEvents) -> None:
    """A thread started through the context executor (or in_context) logs to the attempt that started it."""

    @flowledger.node
    def fan_out(n: int) -> None:
        with ContextThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda i: _log.info("worker %d of %d", i, n), range(3)))

        def plain() -> None:
            _lib.info("plain thread")

        thread = threading.Thread(target=in_context(plain))
        thread.start()
        thread.join()

    @flowledger.node
    async def waiter(name: str) -> None:
        for i in range(3):
            _log.info("%s step %d", name, i)
            await asyncio.sleep(0)

    async def main() -> None:
        async with flowledger.run("shop"):
            await asyncio.gather(waiter("a"), waiter("b"))

    with flowledger.run("shop"):
        fan_out(3)
    asyncio.run(main())
    assert sorted(_messages(events, "fan_out")) == ["plain thread", "worker 0 of 3", "worker 1 of 3", "worker 2 of 3"]
    per_attempt = {d["span_id"]: [r["message"] for r in d["records"]] for d in _logs_of(events, "waiter")}
    assert sorted(per_attempt.values()) == [[f"{n} step {i}" for i in range(3)] for n in ("a", "b")]


def test_a_storm_is_one_line_with_a_count_and_caps_count_what_they_drop(
    events: CapturedEvents, configure: Callable[..., Any]
) -> None:
    """100,000 identical lines are one record with repeats; distinct lines past the caps are counted as dropped."""
    configure(log_max_lines=5)

    @flowledger.node
    def storm() -> None:
        for _ in range(100_000):
            _log.warning("retrying the same thing")
        for i in range(10):
            _log.info("distinct %d", i)

    with flowledger.run("shop"):
        storm()
    (data,) = _logs_of(events, "storm")
    assert data["records"][0]["message"] == "retrying the same thing"
    assert data["records"][0]["repeats"] == 100_000
    assert len(data["records"]) == 5
    assert data["dropped_lines"] == 6
    assert data["dropped_bytes"] == sum(len(f"distinct {i}") for i in range(4, 10))


def test_byte_cap_and_level_threshold(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """log_max_bytes bounds the text kept; log_level drops lines below it before anything is kept."""
    configure(log_max_bytes=10, log_level="warning")

    @flowledger.node
    def noisy() -> None:
        _log.info("an info line is below the threshold")
        _log.warning("12345")
        _log.error("1234567")

    with flowledger.run("shop"):
        noisy()
    (data,) = _logs_of(events, "noisy")
    assert [r["message"] for r in data["records"]] == ["12345"]
    assert (data["dropped_lines"], data["dropped_bytes"]) == (1, 7)


def test_secrets_in_log_text_and_exceptions_are_redacted(events: CapturedEvents) -> None:
    """key=value pairs with secret-looking keys and bearer tokens are hidden, in messages and exception text."""

    @flowledger.node
    def login() -> None:
        _log.info("login user=ann password=hunter2 api_key: 'k-123'")
        _log.info("sending Authorization: Bearer abcdefghijklmnop, then Bearer qrstuvwxyz012")
        try:
            raise ValueError("token=s3cr3t-value rejected")
        except ValueError:
            _log.exception("login failed")

    with flowledger.run("shop"):
        login()
    records = _logs_of(events, "login")[0]["records"]
    assert records[0]["message"] == "login user=ann password=[REDACTED] api_key: [REDACTED]"
    assert "abcdefghijklmnop" not in records[1]["message"]
    assert records[1]["message"] == "sending Authorization: [REDACTED], then Bearer [REDACTED]"
    assert records[2]["level_name"] == "ERROR"
    assert "ValueError: token=[REDACTED] rejected" in records[2]["exception"]
    assert "s3cr3t" not in str(events.of_kind("node_logs"))


def test_redact_text_keeps_harmless_pairs() -> None:
    """Only pairs whose key looks secret change; redaction off leaves text as it is."""
    rx = flowledger.configure().redact_regex
    assert redact_text("count=3 status: ok", rx) == "count=3 status: ok"
    assert redact_text('{"client_secret": "x"}', rx) == '{"client_secret": [REDACTED]}'
    assert redact_text("password=x", None) == "password=x"


def test_redact_text_keeps_the_delimiters_after_a_value() -> None:
    """A closing bracket or punctuation after a secret value stays; inside the value it is hidden with it."""
    rx = flowledger.configure().redact_regex
    assert redact_text("boom ?api_key=SECRETKEY123 (password=hunter2)", rx) == (
        "boom ?api_key=[REDACTED] (password=[REDACTED])"
    )
    assert redact_text("<token=a.b:c)d>. next", rx) == "<token=[REDACTED]>. next"
    assert redact_text("auth: (Bearer abcdefghij) ok", rx) == "auth: (Bearer [REDACTED]) ok"
    assert redact_text("(password=a(b)c).", rx) == "(password=[REDACTED])."


def test_redact_text_takes_the_punctuation_a_secret_ends_with() -> None:
    """``!?:`` after a value, a ``>`` or ``)`` it opened, and a ``.`` before more text are the secret's own."""
    rx = flowledger.configure().redact_regex
    for text in ("password=Summer!", "token=hunter2?", "token=hunter2:", "secret=<hunter2>", "token=ab.cd"):
        assert redact_text(text, rx).endswith("=[REDACTED]"), text
    assert redact_text("token=1. Then", rx) == "token=[REDACTED]. Then"  # a sentence's end stays


def test_redact_text_handles_long_chains_of_pairs() -> None:
    """Thousands of pairs in one token are searched in one pass, without recursion."""
    rx = flowledger.configure().redact_regex
    text = "a=" * 5000 + "password=hunter2"
    assert redact_text(text, rx) == "a=" * 5000 + "password=[REDACTED]"


def test_the_apps_own_handler_still_receives_everything(events: CapturedEvents) -> None:
    """Every record reaches the app's handler unchanged; no logger's level or propagation is touched."""
    own = _Collect()
    _log.addHandler(own)
    root_level, propagate, level = logging.root.level, _log.propagate, _log.level
    try:

        @flowledger.node
        def chatty() -> None:
            for i in range(50):
                _log.debug("line %d", i)
            for _ in range(50):
                _log.info("same")

        with flowledger.run("shop"):
            chatty()
    finally:
        _log.removeHandler(own)
    assert len(own.records) == 100
    assert [r.getMessage() for r in own.records[:2]] == ["line 0", "line 1"]
    assert (logging.root.level, _log.propagate, _log.level) == (root_level, propagate, level)
    assert sum(isinstance(h, AttemptLogHandler) for h in logging.root.handlers) == 1
    assert _logs_of(events, "chatty")[0]["records"] == [
        {**_logs_of(events, "chatty")[0]["records"][0], "message": "same", "repeats": 50}
    ]


def test_without_other_handlers_python_s_last_resort_still_prints(
    events: CapturedEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warning no other handler takes is printed to stderr as Python does: the capture hides nothing."""
    lonely = logging.getLogger("tests.lonely")
    lonely.propagate = False
    try:

        @flowledger.node
        def alone() -> None:
            lonely.warning("nobody listens")

        with flowledger.run("shop"):
            alone()
        # A non-propagating logger without handlers: Python's last resort prints it.
        assert "nobody listens" in capsys.readouterr().err
    finally:
        lonely.propagate = True


def test_capture_off_sends_no_node_logs(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """capture_logs=False records no lines."""
    configure(capture_logs=False)

    @flowledger.node
    def quiet() -> None:
        _log.warning("not recorded")

    with flowledger.run("shop"):
        quiet()
    assert events.of_kind("node_logs") == []


def test_bad_log_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure() refuses a bad level or cap naming it; a bad variable is reported and the default kept."""
    from flowledger._exceptions import ConfigError
    from flowledger.instrument._config import _forget_reports, settings_from_env

    with pytest.raises(ConfigError, match="log_level 'loud' must be one of debug"):
        flowledger.configure(log_level="loud")
    with pytest.raises(ConfigError, match="log_max_lines must be a positive integer"):
        flowledger.configure(log_max_lines=0)
    _forget_reports()
    settings = settings_from_env({"FLOWLEDGER_LOG_LEVEL": "ERROR", "FLOWLEDGER_LOG_MAX_BYTES": "-1"})
    assert settings.log_level.number == 40
    assert settings.log_max_bytes == 256 * 1024


def test_many_lines_go_out_in_several_bounded_events(events: CapturedEvents, configure: Callable[..., Any]) -> None:
    """Past EVENT_RECORDS_MAX lines an attempt's lines are split over several node_logs events, drops on the last."""
    from flowledger.instrument._logs import EVENT_RECORDS_MAX

    configure(log_max_lines=EVENT_RECORDS_MAX * 2 + 10)

    @flowledger.node
    def verbose() -> None:
        for i in range(EVENT_RECORDS_MAX * 2 + 20):
            _log.info("line %d", i)

    with flowledger.run("shop"):
        verbose()
    parts = _logs_of(events, "verbose")
    assert [len(p["records"]) for p in parts] == [EVENT_RECORDS_MAX, EVENT_RECORDS_MAX, 10]
    assert [r["message"] for p in parts for r in p["records"]][-1] == f"line {EVENT_RECORDS_MAX * 2 + 9}"
    assert "dropped_lines" not in parts[0]
    assert parts[-1]["dropped_lines"] == 10
