"""flowledger.artifact: files hashed as they are read, bytes hashed, over 50 MiB not hashed and said why."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger.instrument._artifact import HASH_LIMIT_BYTES, artifact_record
from flowledger.testing import CapturedEvents


def test_a_file_at_the_line_is_hashed_and_one_byte_over_is_not(tmp_path: Path) -> None:
    """Exactly 50 MiB is hashed (streamed); 50 MiB and one byte is recorded with its size and the reason."""
    at_line = tmp_path / "at.bin"
    over = tmp_path / "over.bin"
    for path, size in ((at_line, HASH_LIMIT_BYTES), (over, HASH_LIMIT_BYTES + 1)):
        with path.open("wb") as f:
            f.truncate(size)  # sparse files: fast to make, read back as zeros
    hashed = artifact_record(at_line)
    assert hashed["size_bytes"] == HASH_LIMIT_BYTES
    assert hashed["sha256"] == hashlib.sha256(bytes(HASH_LIMIT_BYTES)).hexdigest()
    assert hashed["sha256_skipped"] is None
    skipped = artifact_record(over)
    assert (skipped["size_bytes"], skipped["sha256"]) == (HASH_LIMIT_BYTES + 1, None)
    assert skipped["sha256_skipped"] == (
        "52428801 bytes is over the 52428800 byte (50 MiB) hashing limit: hashing it would hold up the workflow"
    )


def test_bytes_over_the_line_are_not_hashed_either() -> None:
    """The limit holds for bytes too."""
    record = artifact_record(bytes(HASH_LIMIT_BYTES + 1), name="blob.bin")
    assert record["sha256"] is None
    assert record["media_type"] == "application/octet-stream"
    assert "hashing limit" in record["sha256_skipped"]


def test_a_missing_file_is_recorded_with_the_reason(tmp_path: Path) -> None:
    """A file that cannot be read does not fail the work: its record says why it has no size or hash."""
    record = artifact_record(tmp_path / "gone.txt")
    assert record["name"] == "gone.txt"
    assert (record["size_bytes"], record["sha256"]) == (None, None)
    assert record["sha256_skipped"].startswith("the file could not be read: FileNotFoundError")


@pytest.mark.parametrize(
    ("source", "kwargs", "message"),
    [
        (b"x", {}, "bytes need a name="),
        (42, {}, "takes a path or bytes, got int"),
        (b"x", {"name": "n" * 257}, "name must be a non-empty string of at most 256"),
        (b"x", {"name": "a", "media_type": ""}, "media_type must be a non-empty string"),
    ],
)
def test_arguments_that_make_no_record_are_usage_errors(source: Any, kwargs: dict[str, Any], message: str) -> None:
    """Bytes without a name, something that is neither path nor bytes, over-long text: UsageError naming it."""
    with pytest.raises(flowledger.UsageError, match=message):
        artifact_record(source, **kwargs)


def test_artifacts_ride_on_the_node_and_outside_a_node_is_an_error(events: CapturedEvents, tmp_path: Path) -> None:
    """Inside a node each artifact is in its node_finished; outside one, a UsageError says where to call it."""
    report = tmp_path / "report.json"
    report.write_text("{}")

    @flowledger.node
    def write() -> None:
        flowledger.artifact(report)
        flowledger.artifact(b"hello", name="greeting.txt", uri="s3://b/greeting.txt")

    with flowledger.run("wf"):
        write()
        with pytest.raises(flowledger.UsageError, match=r"flowledger\.artifact\(\) records on the current node"):
            flowledger.artifact(report)
    artifacts = events.nodes("write")[0]["data"]["artifacts"]
    assert [a["name"] for a in artifacts] == ["report.json", "greeting.txt"]
    assert artifacts[0]["uri"] == report.absolute().as_uri()
    assert artifacts[0]["media_type"] == "application/json"
    assert artifacts[1]["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert artifacts[1]["media_type"] == "text/plain"
