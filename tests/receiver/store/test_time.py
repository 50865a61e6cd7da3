"""Timestamps are written in one place (flowledger._wire); the store's helpers call it."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowledger
from flowledger._wire import format_datetime, format_ts
from flowledger.receiver.store._fold import completed_at
from flowledger.receiver.store._time import normalize_ts, same_ts, ts_from_epoch_s

PACKAGE = Path(flowledger.__file__).parent
_HOME = "_wire.py"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _writes_a_timestamp(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "%Y-%m-%dT%H:%M:%S" in node.value:
            return True
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr == "isoformat" and any(keyword.arg == "timespec" for keyword in node.keywords):
            return True
    return False


def test_only_the_wire_module_formats_timestamps() -> None:
    """No module but flowledger/_wire.py spells the timestamp format (strftime or isoformat with timespec)."""
    writers = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py")) if _writes_a_timestamp(p)]
    assert writers == [_HOME]


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999))
def test_seconds_and_nanoseconds_give_the_same_text(micros: int) -> None:
    """ts_from_epoch_s of an instant is format_ts of it, to the microsecond."""
    assert ts_from_epoch_s(micros / 1_000_000) == format_ts(int(micros / 1_000_000 * 1_000_000) * 1_000)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_normalised_text_is_the_wire_form(value: datetime) -> None:
    """normalize_ts of any RFC 3339 text is format_datetime of its instant, and that text is kept as it is."""
    text = format_datetime(value)
    assert normalize_ts(value.isoformat()) == text
    assert normalize_ts(text) == text
    seconds = (value - _EPOCH) // timedelta(seconds=1)
    assert format_ts(seconds * 1_000_000_000 + value.microsecond * 1_000) == text


def test_completed_at_is_written_in_the_wire_form() -> None:
    """started_at plus duration_ms comes back in the normalised form."""
    start = datetime(2026, 1, 31, 8, 0, tzinfo=UTC)
    assert completed_at(format_datetime(start), 1500.25) == format_datetime(start + timedelta(milliseconds=1500.25))
    assert completed_at("2026-01-31T08:00:00.000000Z", 1500.25) == "2026-01-31T08:00:01.500250Z"


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]),
)
def test_format_datetime_writes_strftimes_text_with_a_four_digit_year(value: datetime, zone: timezone | None) -> None:
    """format_datetime gives strftime's text for every instant, naive or aware, with the year always in four digits
    (strftime's %Y leaves years before 1000 unpadded, and such a text would sort after 2026)."""
    if zone is not None:
        value = value.replace(tzinfo=zone)
    utc = value.astimezone(UTC) if zone is not None else value
    assert format_datetime(value) == f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%fZ")


@given(st.lists(st.datetimes(min_value=datetime(1, 1, 1), timezones=st.just(UTC)), min_size=2, max_size=5))
def test_timestamps_sort_as_their_instants_do(values: list[datetime]) -> None:
    """Stores cut ranges and buckets by comparing the text: its order is the instants' order, in every year."""
    assert sorted(values, key=format_datetime) == sorted(values)


def test_a_timestamp_written_unpadded_by_an_earlier_receiver_still_matches() -> None:
    """Ledger entries hashed when years before 1000 were written unpadded still match their event's ts."""
    assert same_ts("0500-01-01T00:00:00.000000Z", "0500-01-01T01:00:00+01:00")
    assert same_ts("500-01-01T00:00:00.000000Z", "0500-01-01T01:00:00+01:00")
    assert same_ts("2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00Z")
    assert not same_ts("500-01-01T00:00:00.000000Z", "0500-01-01T00:00:01Z")
    assert not same_ts("026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00Z")


@pytest.mark.parametrize(
    "text",
    ["2026-01-01t10:00:00.000000Z", "2026-01-01T10:00:00z", "2026-01-01t10:00:00.000000z", "2026-01-01 10:00:00Z"],
)
def test_lower_case_t_and_z_are_read_as_rfc_3339_allows(text: str) -> None:
    """A lower-case "t" or "z" (RFC 3339, 5.6) names the same instant; a "t" in the stored form came back as it
    was, and then sorted after every upper-case "T" in a range's SQL comparison."""
    assert normalize_ts(text) == "2026-01-01T10:00:00.000000Z"
