"""Reading definition files: YAML and JSON, positions, duplicate keys, syntax errors."""

from __future__ import annotations

import pytest

from flowledger import DefinitionError
from flowledger.codegen._load import load_definition, parse_definition


def _problems(raw: bytes, name: str) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_definition(raw, name)
    return info.value.problems


def test_yaml_values_and_keys_carry_line_and_column() -> None:
    """Every value and key of a YAML file is addressed by its path with a 1-based position."""
    doc = parse_definition(b"flowledger: 1\nnodes:\n  - id: a\n    needs: [b, c]\n", "wf.yaml")
    assert doc.data == {"flowledger": 1, "nodes": [{"id": "a", "needs": ["b", "c"]}]}
    assert doc.values[("nodes", 0, "needs", 1)] == (4, 16)
    assert doc.keys[("nodes", 0, "needs")] == (4, 5)


def test_yaml_duplicate_keys_are_all_reported() -> None:
    """Duplicate keys are errors (every one of them), naming where the key was first written."""
    found = _problems(b"a: 1\nb: 2\na: 3\nn:\n  x: 1\n  x: 2\n", "wf.yaml")
    assert found == [
        "wf.yaml:3:1: a: duplicate key `a` (first written at line 1); keep one",
        "wf.yaml:6:3: n.x: duplicate key `x` (first written at line 5); keep one",
    ]


def test_yaml_syntax_error_names_the_place() -> None:
    """A YAML syntax error is one problem with its line and column."""
    (found,) = _problems(b"a: [1, 2\nb: 3\n", "wf.yaml")
    assert found.startswith("wf.yaml:2:")
    assert "invalid YAML" in found


def test_yaml_1_2_scalars() -> None:
    """YAML is read as 1.2: `yes` stays a string, numbers and nulls are typed, tags are refused."""
    doc = parse_definition(b"a: yes\nb: 0x10\nc: 1.5\nd: null\ne: true\nf: -7\n", "wf.yaml")
    assert doc.data == {"a": "yes", "b": 16, "c": 1.5, "d": None, "e": True, "f": -7}
    core = b"on: no\noff: Off\ny: 0777\nz: 0o17\nt: ~\nu:\nv: 1_000\nw: 12e3\nx: +.5\nk: 2001-12-14\nn: NULL\n"
    assert parse_definition(core, "wf.yaml").data == {
        "on": "no",
        "off": "Off",
        "y": 777,
        "z": 15,
        "t": None,
        "u": None,
        "v": "1_000",
        "w": 12000.0,
        "x": 0.5,
        "k": "2001-12-14",
        "n": None,
    }
    assert _problems(b"a: !!binary aGVsbG8=\n", "wf.yaml") == [
        "wf.yaml:1:4: a: YAML tags (`!!binary`) are not supported: a definition holds JSON values; remove the tag"
    ]
    assert _problems(b"a: .inf\n", "wf.yaml") == [
        "wf.yaml:1:4: a: `.inf` is not a finite number; only finite numbers are allowed"
    ]


def test_json_positions_and_duplicates() -> None:
    """JSON files get positions too, and duplicate keys are reported like in YAML."""
    raw = b'{\n  "a": {"x": 1,\n        "x": 2},\n  "b": [true, null, "s\\u2028"]\n}\n'
    found = _problems(raw, "wf.json")
    assert found == ["wf.json:3:9: a.x: duplicate key `x` (first written at line 2); keep one"]
    doc = parse_definition(b'{"b": [true, null, "s\\u2028", -1.5e2]}', "wf.json")
    assert doc.data == {"b": [True, None, "s\u2028", -150.0]}
    assert doc.values[("b", 2)] == (1, 20)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": 1,}', "wf.json:1:9: (root): invalid JSON: expected a key in double quotes"),
        (b'{"a" 1}', "wf.json:1:6: (root): invalid JSON: expected `:` after the key"),
        (b'{"a": tru}', "wf.json:1:7: (root): invalid JSON: expected a value, found 't'"),
        (b'{"a": 1} x', "wf.json:1:10: (root): invalid JSON: extra data after the JSON value"),
        (b'{"a": "x', "wf.json:1:7: (root): invalid JSON: unterminated string starting at"),
        (b"", "wf.json:1:1: (root): invalid JSON: the file is empty; a definition is a JSON object"),
    ],
)
def test_json_syntax_errors_name_the_place(raw: bytes, expected: str) -> None:
    """Each JSON syntax error is reported at its line and column."""
    (found,) = _problems(raw, "wf.json")
    assert found.startswith(expected)


def test_empty_and_unreadable_files() -> None:
    """An empty YAML file, a non-UTF-8 file and a missing file each get one clear problem."""
    assert _problems(b"", "wf.yaml") == [
        "wf.yaml:1:1: (root): the file is empty; a definition starts with `flowledger: 1`"
    ]
    assert _problems(b"a: \xff\n", "wf.yaml") == [
        "wf.yaml: (root): the file is not UTF-8 text (bad byte at offset 3); save it as UTF-8"
    ]
    with pytest.raises(DefinitionError) as info:
        load_definition("/nonexistent/flowledger/wf.yaml")
    assert info.value.problems[0].startswith("/nonexistent/flowledger/wf.yaml: (root): cannot read the file")


def test_sha256_is_of_the_file_bytes() -> None:
    """The document's sha256 is the hex digest of exactly the bytes read."""
    import hashlib

    raw = b"flowledger: 1\n"
    assert parse_definition(raw, "wf.yaml").sha256 == hashlib.sha256(raw).hexdigest()
