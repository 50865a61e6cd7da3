"""Error grouping on a corpus of real-looking messages: what varies is normalised away, what matters stays."""

from __future__ import annotations

import pytest

from flowledger.receiver.store._error_groups import MESSAGE_MAX_CHARS, error_fingerprint, normalize_message

SAME: list[tuple[str, list[str]]] = [
    ("timeouts with different durations", ["Timed out after 30.5s", "Timed out after 2s", "Timed out after 120.25s"]),
    (
        "HTTP 5xx with different request ids",
        [
            "HTTP 503 Service Unavailable (request id req_8f3a9c2b1d7e44)",
            "HTTP 503 Service Unavailable (request id req_11aa9c2b1d7e99)",
        ],
    ),
    (
        "httpx status errors with different URLs",
        [
            "Server error '503 Service Unavailable' for url 'https://api.example.com/v1/orders/1234'",
            "Server error '503 Service Unavailable' for url 'https://api.example.com/v1/orders/98'",
        ],
    ),
    ("KeyError with different keys", ["'user_42'", "'email'", '"sku"']),
    (
        "SQL errors naming different values",
        [
            'duplicate key value violates unique constraint "orders_pkey" DETAIL: Key (id)=(4411) already exists.',
            'duplicate key value violates unique constraint "orders_pkey" DETAIL: Key (id)=(97) already exists.',
        ],
    ),
    (
        "Python tracebacks with different lines and values",
        [
            'Traceback (most recent call last):\n  File "/srv/app/steps.py", line 12, in price\n'
            "    raise ValueError(x)\nValueError: bad quantity 17",
            'Traceback (most recent call last):\n  File "/opt/other/steps.py", line 40, in price\n'
            "    raise ValueError(x)\nValueError: bad quantity 3",
        ],
    ),
    (
        "ids of every kind",
        [
            "run 0190a3f2-1c2d-7e3f-8a9b-0c1d2e3f4a5b lost; object at 0x7f3a9c2d10, sha 3f7a9b2c8d1e0f4a",
            "run 0190a3f2-ffff-7e3f-8a9b-0c1d2e3f4a00 lost; object at 0x1, sha 99aa9b2c8d1e0f4b",
        ],
    ),
    ("paths", ["File /home/ann/data/in.csv not found", "File /srv/x/y.csv not found"]),
    ("whitespace", ["connection   reset\n by peer", "connection reset by peer"]),
]

DIFFERENT: list[tuple[str, str, str]] = [
    ("HTTP status codes", "HTTP 503 Service Unavailable", "HTTP 404 Not Found"),
    ("quoted status lines", "Server error '503 Service Unavailable'", "Server error '502 Bad Gateway'"),
    ("status code words", "upstream answered status code 500", "upstream answered status code 429"),
    ("different SQL errors", "UNIQUE constraint failed: users.email", "NOT NULL constraint failed: users.email"),
    ("different words", "Timed out after 30s", "Cancelled after 30s"),
]


@pytest.mark.parametrize(("what", "messages"), SAME, ids=[what for what, _ in SAME])
def test_messages_that_differ_only_in_values_normalise_alike(what: str, messages: list[str]) -> None:
    """Durations, request ids, keys, quoted values, paths, ids and traceback lines do not split a group."""
    assert len({normalize_message(m) for m in messages}) == 1, [normalize_message(m) for m in messages]
    assert len({error_fingerprint("E", m, "n", "w") for m in messages}) == 1


@pytest.mark.parametrize(("what", "one", "other"), DIFFERENT, ids=[what for what, _, _ in DIFFERENT])
def test_messages_that_differ_in_meaning_stay_apart(what: str, one: str, other: str) -> None:
    """HTTP status codes and words are kept: a 503 and a 404 are two errors."""
    assert normalize_message(one) != normalize_message(other)
    assert error_fingerprint("E", one, "n", "w") != error_fingerprint("E", other, "n", "w")


def test_placeholders_read_as_what_they_replace() -> None:
    """Each kind of varying value becomes its own placeholder."""
    assert normalize_message("Timed out after 30.5s") == "Timed out after <n>s"
    assert normalize_message("KeyError 'user_42'") == "KeyError '<str>'"
    assert normalize_message("GET https://api.example.com/v1/o/7 failed") == "GET <url> failed"
    assert normalize_message("open /srv/app/x.py") == "open <path>"
    assert normalize_message("id 0190a3f2-1c2d-7e3f-8a9b-0c1d2e3f4a5b") == "id <uuid>"
    assert normalize_message("at 0x7f3a9c") == "at <hex>"
    assert normalize_message("request req_8f3a9c2b1d7e44") == "request <hex>"
    assert normalize_message("HTTP 503 Service Unavailable") == "HTTP 503 Service Unavailable"


def test_type_node_and_workflow_are_part_of_the_fingerprint() -> None:
    """The same message of another type, node or workflow is another group."""
    base = error_fingerprint("ValueError", "bad", "price", "orders")
    assert base != error_fingerprint("KeyError", "bad", "price", "orders")
    assert base != error_fingerprint("ValueError", "bad", "fetch", "orders")
    assert base != error_fingerprint("ValueError", "bad", "price", "billing")
    assert base != error_fingerprint("ValueError", "bad", None, "orders")
    assert len(base) == 16
    assert int(base, 16) >= 0


def test_a_long_message_is_cut() -> None:
    """A normalised message never exceeds MESSAGE_MAX_CHARS."""
    assert len(normalize_message("word " * 1000)) == MESSAGE_MAX_CHARS
