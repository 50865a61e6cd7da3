"""Hostile definitions: recursive aliases, alias bombs and deep nesting get a clear problem, in bounded time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowledger import DefinitionError
from flowledger.codegen._cli import validate_command
from flowledger.codegen._load import parse_definition

SRC = Path(__file__).resolve().parents[2] / "src"
MAX_NESTING = 100
"""The documented limits (docs/definitions.md)."""
MAX_ALIAS_VALUES = 100_000
SAFETY_TIMEOUT_S = 120
"""Only stops a runaway process from hanging the suite; the tests assert outcomes, not timing."""

# Each level copies the one before nine times: fully expanded, `i` alone would be over 400 million values.
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def _problems(raw: bytes | str, name: str = "wf.yaml") -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_definition(raw.encode() if isinstance(raw, str) else raw, name)
    return info.value.problems


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowledger", "validate", path.name],
        cwd=path.parent,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=SAFETY_TIMEOUT_S,
    )


def test_the_cli_refuses_a_recursive_alias_naming_the_alias(tmp_path: Path) -> None:
    """`flowledger validate` on an alias inside its own anchor exits 2 at the alias, with no RecursionError."""
    (tmp_path / "r.yaml").write_text("a: &a [*a]\n")
    done = _validate(tmp_path / "r.yaml")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-2:] == [  # after the validator's problems of a file that is no definition
        "r.yaml:1:8: a[0]: the alias `*a` is inside the value of its own anchor `&a` (line 1), so that value "
        "would contain itself without end; write the value out instead of a recursive alias",
        "5 problems found.",
    ]
    assert "r.yaml:1:1: (root): missing required key `flowledger`" in done.stderr


def test_the_cli_refuses_a_billion_laughs_file_at_the_alias_past_the_limit(tmp_path: Path) -> None:
    """Nested aliases that would expand past the limit stop at the first alias past it, naming the limit."""
    (tmp_path / "laughs.yaml").write_text(BILLION_LAUGHS)
    done = _validate(tmp_path / "laughs.yaml")
    assert done.returncode == 2, done.stderr
    (problem, summary) = done.stderr.splitlines()
    # a, b, c and d copy 74,718 values; the first `*e` (66,430 more) would pass 100,000.
    assert problem.startswith("laughs.yaml:6:8: f[0]: the alias `*e` would make aliases copy more than 100,000 values")
    assert summary == "1 problem found."


def test_recursive_aliases_deeper_in_the_value_and_in_mappings() -> None:
    """An alias anywhere inside its own anchor's value is refused; the rest of the file is still checked."""
    found = _problems("a: &a\n  b: [1, {c: *a}]\nd: *nope\n")
    assert found == [
        "wf.yaml:2:14: a.b[1].c: the alias `*a` is inside the value of its own anchor `&a` (line 1), so that "
        "value would contain itself without end; write the value out instead of a recursive alias",
        "wf.yaml:3:4: d: the alias `*nope` refers to no anchor; define `&nope` before the alias uses it",
    ]


def test_aliases_nested_in_aliases_cannot_pass_the_depth_limit() -> None:
    """Aliases stacking deep values on each other are refused at the alias that goes past the depth limit."""
    half = MAX_NESTING // 2 + 1
    text = f"a: &a {'[' * half}1{']' * half}\nb: &b {'[' * half}*a{']' * half}\n"
    (found,) = _problems(text)
    assert found.startswith(f"wf.yaml:2:{7 + half}: b{'[0]' * half}: the alias `*a` would nest lists and mappings")
    assert f"more than {MAX_NESTING} levels deep" in found


TOO_DEEP = f"lists and mappings are nested more than {MAX_NESTING} levels deep"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a: " + "[" * 999 + "]" * 999 + "\n", f"wf.yaml:1:103: a{'[0]' * 99}: {TOO_DEEP}", id="flow"),
        pytest.param(
            "a: " + "{x: " * 999 + "1" + "}" * 999 + "\n", f"wf.yaml:1:400: a{'.x' * 99}: {TOO_DEEP}", id="map"
        ),
        pytest.param("- " * 999 + "1\n", f"wf.yaml:1:201: {'[0]' * 100}: {TOO_DEEP}", id="block"),
        pytest.param("- " * 100_000 + "1\n", f"wf.yaml:1:201: {'[0]' * 100}: {TOO_DEEP}", id="block-100000"),
        # libyaml's scanner reads ahead through flow brackets: it stops at its own limit, 1,000 levels
        pytest.param("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "wf.yaml:1:", id="flow-100000"),
    ],
)
def test_deep_yaml_nesting_is_one_clear_problem(text: str, expected: str) -> None:
    """YAML nested past the limit is one problem at the list or mapping that goes past it."""
    (found,) = _problems(text)
    assert found.startswith(expected)
    assert "nest" in found


@pytest.mark.parametrize(
    ("text", "column"),
    [
        pytest.param("[" * 100_000 + "]" * 100_000, MAX_NESTING + 1, id="arrays"),
        pytest.param('{"a": ' * 100_000 + "1" + "}" * 100_000, 6 * MAX_NESTING + 1, id="objects"),
    ],
)
def test_deep_json_nesting_is_one_clear_problem(text: str, column: int) -> None:
    """JSON nested 100,000 levels deep is one problem at the first level past the limit, not a RecursionError."""
    (found,) = _problems(text, "wf.json")
    assert found.startswith(f"wf.json:1:{column}: ")
    assert found.endswith(
        f": lists and mappings are nested more than {MAX_NESTING} levels deep; a definition needs far fewer, "
        "so flatten this value"
    )


def test_the_cli_refuses_deep_json(tmp_path: Path) -> None:
    """`flowledger validate` on JSON nested 100,000 levels deep exits 2 with the problem, not exit 1."""
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    result = CliRunner().invoke(validate_command, [str(tmp_path / "deep.json")])
    assert result.exit_code == 2, result.output
    assert "nested more than 100 levels deep" in result.stderr


def test_values_at_the_depth_limit_are_read() -> None:
    """Nesting up to the limit itself is allowed, in YAML and in JSON."""
    assert parse_definition(("[" * MAX_NESTING + "]" * MAX_NESTING).encode(), "wf.json").data is not None
    assert parse_definition(("a: " + "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)).encode(), "wf.yaml").data


SHARED_RETRY = """\
flowledger: 1
workflow: {id: shared}
trigger: {type: manual}
nodes:
  - id: fetch
    call: shop.steps:fetch
    retry: &retry {attempts: 3, backoff_s: 0.2}
  - id: price
    call: shop.steps:price
    needs: [fetch]
    retry: *retry
"""


def test_an_anchor_shared_by_aliases_is_read_as_copies(tmp_path: Path) -> None:
    """An ordinary anchor and alias still work: each use is its own copy, placed where the anchor wrote it."""
    doc = parse_definition(SHARED_RETRY.encode(), "wf.yaml")
    nodes = doc.data["nodes"]
    assert nodes[0]["retry"] == nodes[1]["retry"] == {"attempts": 3, "backoff_s": 0.2}
    assert nodes[0]["retry"] is not nodes[1]["retry"]
    assert doc.values[("nodes", 1, "retry")] == (11, 12)  # the alias
    assert doc.values[("nodes", 1, "retry", "attempts")] == doc.values[("nodes", 0, "retry", "attempts")] == (7, 30)
    assert doc.keys[("nodes", 1, "retry", "backoff_s")] == (7, 33)
    (tmp_path / "wf.yaml").write_text(SHARED_RETRY)
    result = CliRunner().invoke(validate_command, [str(tmp_path / "wf.yaml")])
    assert result.exit_code == 0, result.output


def test_aliases_up_to_the_limit_are_read() -> None:
    """Aliases copying exactly the limit's number of values are allowed; scalars and keys can be aliased."""
    lists = MAX_ALIAS_VALUES // 100 - 1  # each a copy of a list of 99 scalars: 100 values
    text = (
        f"a: &a [{', '.join(['x'] * 99)}]\nb: [{', '.join(['*a'] * lists)}]\n"
        f"k: &k name\n*k : *k\nc: [{', '.join(['*k'] * 98)}]\n"
    )
    data = parse_definition(text.encode(), "wf.yaml").data
    assert len(data["b"]) == lists
    assert data["name"] == "name"
    assert data["c"] == ["name"] * 98
    (found,) = _problems(text + "d: *k\n")
    assert found.startswith("wf.yaml:6:4: d: the alias `*k` would make aliases copy more than 100,000 values")


def test_duplicate_anchors_and_merge_keys_are_refused() -> None:
    """An anchor name defined twice is a problem; merge keys stay refused."""
    found = _problems("a: &x 1\nb: &x 2\nc:\n  <<: {d: 1}\n")
    assert found == [
        "wf.yaml:2:4: b: the anchor `&x` is already defined at line 1; give each anchor its own name",
        "wf.yaml:4:3: c: YAML merge keys (<<) are not supported; write the keys out",
    ]
