"""`validate` and `generate` list every problem at once, each on one line at its place, and never change a value or
a file silently: a URL urlsplit refuses, several problems in one section, characters YAML 1.1 reads as line
breaks, control characters, keys holding line breaks, numbers written as floats, `-o` naming the definition."""

from __future__ import annotations

import json
import os
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from click.testing import CliRunner

from flowledger import DefinitionError
from flowledger.codegen import _literals
from flowledger.codegen._cli import generate_command, validate_command
from flowledger.codegen._load import read_definition
from flowledger.codegen._validate import validate

HEAD = "flowledger: 1\nworkflow: {id: wf}\n"


def problems(text: str, name: str = "wf.yaml") -> list[str]:
    """The problems reported for ``text`` (empty when it is valid)."""
    try:
        validate(read_definition(text.encode(), name))
    except DefinitionError as exc:
        return exc.problems
    return []


def _schema_check(value: Any) -> bool:
    """Whether the shipped definition JSON Schema accepts ``value``."""
    text = resources.files("flowledger").joinpath("schemas", "definition.v1.schema.json").read_text("utf-8")
    try:
        fastjsonschema.compile(json.loads(text))(value)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


# --- a URL urlsplit refuses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://[::1/hook", "http://::1]/hook", "http://ex\uff03ample.com/hook"])
def test_a_url_urlsplit_refuses_is_a_problem_listed_with_the_others(tmp_path: Path, url: str) -> None:
    """An unbalanced IPv6 bracket (or a host NFKC turns into `#`) exits 2 listing it and the other problems."""
    path = tmp_path / "v6.yaml"
    path.write_text(f'flowledger: 1\nworkflow: {{id: Bad}}\nnodes: [{{id: a, http: {{url: "{url}"}}}}]\n', "utf-8")
    result = CliRunner().invoke(validate_command, [str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{path}:2:16: workflow.id: 'Bad' is not a workflow id")
    assert lines[1].startswith(f"{path}:3:29: nodes[0].http.url: {url!r} is not an absolute http(s) URL")
    assert lines[2] == "2 problems found."


# --- every problem of a section ---------------------------------------------------------------------------------


def test_retry_without_attempts_still_checks_its_other_settings() -> None:
    """`retry: {backoff_s: -1}`: the missing attempts and the negative backoff are both reported."""
    assert problems(HEAD + "nodes:\n  - {id: a, call: 'm:f', retry: {backoff_s: -1}}\n") == [
        "wf.yaml:4:33: nodes[0].retry: missing required key `attempts`",
        "wf.yaml:4:45: nodes[0].retry.backoff_s: must be at least 0, found -1",
    ]


def test_http_without_url_still_checks_its_method_and_headers() -> None:
    """`http: {method: FETCH, headers: {"Bad Name": 1}}`: the missing url, the method and the header name."""
    found = problems(HEAD + "nodes:\n  - {id: a, http: {method: FETCH, headers: {'Bad Name': 1}}}\n")
    assert [p.split(": ", 2)[1] for p in found] == [
        "nodes[0].http",
        "nodes[0].http.method",
        "nodes[0].http.headers.Bad Name",
    ]
    assert found[0].endswith("missing required key `url`")
    assert "'FETCH' is not allowed" in found[1]
    assert "'Bad Name' is not an HTTP header name" in found[2]


def test_a_trigger_of_an_unknown_type_still_checks_its_settings() -> None:
    """`trigger: {type: htp, http: {path: no-slash, extra: 1}}`: the type, the path and the unknown key."""
    found = problems(
        HEAD + "trigger: {type: htp, http: {path: no-slash, extra: 1}}\nnodes:\n  - {id: a, call: 'm:f'}\n"
    )
    assert [p.split(": ", 2)[1] for p in found] == ["trigger.type", "trigger.http.path", "trigger.http.extra"]
    assert "'htp' is not allowed (did you mean `http`?)" in found[0]
    assert "'no-slash' is not a route path" in found[1]
    assert "unknown key `extra`" in found[2]


def test_a_node_with_call_and_http_has_both_checked() -> None:
    """A node with both `call` and `http` is told so, and a bad call string and a bad URL are reported too."""
    found = problems(HEAD + "nodes:\n  - {id: a, call: not a call, http: {url: 'ftp://x'}}\n")
    assert [p.split(": ", 2)[1] for p in found] == ["nodes[0].call", "nodes[0].http", "nodes[0].http.url"]
    assert "'not a call' is not an import path" in found[0]
    assert found[1].endswith("a node has either `call` or `http`, not both")
    assert "'ftp://x' is not an absolute http(s) URL" in found[2]


# --- -o naming the definition -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same path", "another spelling", "symbolic link", "hard link"])
def test_generate_refuses_to_write_over_its_definition(tmp_path: Path, how: str) -> None:
    """`generate DEF -o DEF` (or a name of the same file) exits 2 with one line and leaves the definition as it was."""
    definition = tmp_path / "wf.yaml"
    text = HEAD + "nodes:\n  - {id: a, call: 'm:f'}\n"
    definition.write_text(text, "utf-8")
    (tmp_path / "sub").mkdir()
    output = {
        "same path": definition,
        "another spelling": tmp_path / "sub" / ".." / "wf.yaml",
        "symbolic link": tmp_path / "link.yaml",
        "hard link": tmp_path / "hard.yaml",
    }[how]
    if how == "symbolic link":
        output.symlink_to(definition)
    elif how == "hard link":
        os.link(definition, output)
    result = CliRunner().invoke(generate_command, [str(definition), "-o", str(output)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: -o {output} is the definition {definition} itself")
    assert definition.read_text("utf-8") == text


def test_generate_writes_beside_its_definition(tmp_path: Path) -> None:
    """A different file next to the definition is written as before (the refusal is for the same file only)."""
    definition = tmp_path / "wf.yaml"
    definition.write_text(HEAD + "nodes:\n  - {id: a, call: 'm:f'}\n", "utf-8")
    result = CliRunner().invoke(generate_command, [str(definition), "-o", str(tmp_path / "wf.py")])
    assert result.exit_code == 0, result.output
    assert "WORKFLOW" in (tmp_path / "wf.py").read_text("utf-8")


# --- characters the YAML parser cannot take as they are ----------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "name", "escape"),
    [
        ("\x85", "NEXT LINE", "\\x85"),
        ("\u2028", "LINE SEPARATOR", "\\u2028"),
        ("\u2029", "PARAGRAPH SEPARATOR", "\\u2029"),
    ],
)
@pytest.mark.parametrize("where", ["quoted", "plain"])
def test_yaml_1_1_line_breaks_are_refused_at_their_place(char: str, name: str, escape: str, where: str) -> None:
    """U+0085, U+2028, U+2029 (line breaks to libyaml, not to YAML 1.2) are refused at their line and column, with
    the escape to write; the problems after them keep their lines."""
    value = f'"p{char}q"' if where == "quoted" else f"p{char}q"
    text = f"flowledger: 1\nworkflow: {{id: wf, version: {value}}}\nnodes:\n  - {{id: a, call: 'm:f'}}\n"
    assert problems(text) == [
        f"wf.yaml:2:{31 if where == 'quoted' else 30}: (root): the character U+{ord(char):04X} ({name}) would be "
        f"read as a line break by the YAML parser, changing the value and the line numbers after it; write it as "
        f"the escape {escape} inside a double-quoted string"
    ]


def test_the_escape_keeps_the_character_and_json_takes_it_as_it_is() -> None:
    """Written as the suggested escape, the character reaches the value unchanged; JSON takes it raw."""
    yaml_text = 'flowledger: 1\nworkflow: {id: wf, version: "p\\u2028q\\x85"}\nnodes:\n  - {id: a, call: "m:f"}\n'
    assert validate(read_definition(yaml_text.encode(), "wf.yaml")).workflow.version == "p\u2028q\x85"
    json_text = json.dumps(
        {"flowledger": 1, "workflow": {"id": "wf", "version": "p\u2028q"}, "nodes": [{"id": "a", "call": "m:f"}]},
        ensure_ascii=False,
    )
    assert validate(read_definition(json_text.encode(), "wf.json")).workflow.version == "p\u2028q"


def test_a_control_character_in_yaml_is_one_placed_problem(tmp_path: Path) -> None:
    """A BEL in a YAML value is one problem line with its line and column (and so in --json), not PyYAML's two."""
    path = tmp_path / "bel.yaml"
    path.write_bytes(b'flowledger: 1\nworkflow: {id: a, name: "x\x07y"}\r\nnodes: [{id: a, call: "m:f"}]\n\x1b\n')
    result = CliRunner().invoke(validate_command, [str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}:2:27: (root): the control character U+0007 is not allowed in YAML text; write it as the escape "
        "\\x07 inside a double-quoted string",
        f"{path}:4:1: (root): the control character U+001B is not allowed in YAML text; write it as the escape "
        "\\x1b inside a double-quoted string",
        "2 problems found.",
    ]
    as_json = CliRunner().invoke(validate_command, [str(path), "--json"])
    assert [(p["line"], p["column"]) for p in json.loads(as_json.stdout)["problems"]] == [(2, 27), (4, 1)]


# --- keys holding line breaks or escapes ---------------------------------------------------------------------------


def test_keys_with_line_breaks_or_escapes_are_shown_escaped(tmp_path: Path) -> None:
    """JSON keys holding a line break, a carriage return or ESC are printed escaped: one problem a line, none
    forged, no terminal escape written."""
    forged = "x\nfake.json:1:1: (root): forged\x1b[31m"
    node = {"id": "a", "call": "m:f", forged: 1, "a\rb": 2, "with": {"k\n": 1}}
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"flowledger": 1, "workflow": {"id": "wf"}, "nodes": [node]}), "utf-8")
    result = CliRunner().invoke(validate_command, [str(path)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 4
    assert lines[-1] == "3 problems found."
    assert "\x1b" not in result.stderr
    assert "\r" not in result.stderr
    shown = repr(forged)
    assert f"nodes[0].{shown}: unknown key `{shown}`" in lines[0]
    assert "nodes[0].'a\\rb': unknown key `'a\\rb'`" in lines[1]
    assert "nodes[0].with.'k\\n': 'k\\n' is not a keyword argument name" in lines[2]


def test_duplicate_keys_with_line_breaks_are_shown_escaped() -> None:
    """A duplicate key holding a line break (a YAML escape, or JSON) is shown escaped in its problem."""
    yaml_found = problems(HEAD + 'nodes:\n  - {id: a, call: "m:f", with: {"k\\nx": 1, "k\\nx": 2}}\n')
    json_found = problems(
        '{"flowledger": 1, "workflow": {"id": "wf", "name": "a", "na\\u001bme": 1, "na\\u001bme": 2}}', "wf.json"
    )
    assert any("duplicate key `'k\\nx'`" in p and "\n" not in p for p in yaml_found)
    assert any("duplicate key `'na\\x1bme'`" in p and "\x1b" not in p for p in json_found)


# --- numbers --------------------------------------------------------------------------------------------------------


def test_whole_numbers_written_as_floats_are_whole_numbers_as_the_schema_has_them() -> None:
    """`attempts: 3.0` and `max_concurrency: 1e3` are 3 and 1000, which the shipped JSON Schema accepts too; a
    number with a fraction is refused by both, the problem saying so."""
    node = "nodes:\n  - {id: a, call: 'm:f', retry: {attempts: 3.0}, map: {max_concurrency: 1e3}}\n"
    model = validate(read_definition((HEAD + node).encode(), "wf.yaml"))
    retry, mapped = model.nodes[0].retry, model.nodes[0].map
    assert retry is not None
    assert mapped is not None
    assert (retry.attempts, type(retry.attempts)) == (3, int)
    assert (mapped.max_concurrency, type(mapped.max_concurrency)) == (1000, int)
    base = {"flowledger": 1, "workflow": {"id": "wf"}}
    assert _schema_check(base | {"nodes": [{"id": "a", "call": "m:f", "retry": {"attempts": 3.0}}]})
    assert not _schema_check(base | {"nodes": [{"id": "a", "call": "m:f", "retry": {"attempts": 2.5}}]})
    assert problems(HEAD + "nodes:\n  - {id: a, call: 'm:f', retry: {attempts: 2.5}}\n") == [
        "wf.yaml:4:44: nodes[0].retry.attempts: expected a whole number, found 2.5, which has a fraction"
    ]
    assert problems(HEAD + "nodes:\n  - {id: a, call: 'm:f', retry: {attempts: '3'}}\n") == [
        "wf.yaml:4:44: nodes[0].retry.attempts: expected a whole number, found a string; write it without quotes"
    ]


# --- trigger paths and types ----------------------------------------------------------------------------------------


def test_a_percent_escape_in_an_http_trigger_path_is_refused_by_the_validator_and_the_schema() -> None:
    """`path: /a%20b` is refused (requests are matched decoded, so it could never match), as `?` and `#` are."""
    found = problems(HEAD + "trigger: {type: http, http: {path: /a%20b}}\nnodes:\n  - {id: a, call: 'm:f'}\n")
    assert len(found) == 1
    assert found[0].startswith("wf.yaml:3:36: trigger.http.path: '/a%20b' holds a percent-escape (`%`)")
    base = {"flowledger": 1, "workflow": {"id": "wf"}, "nodes": [{"id": "a", "call": "m:f"}]}
    assert not _schema_check(base | {"trigger": {"type": "http", "http": {"path": "/a%20b"}}})
    assert _schema_check(base | {"trigger": {"type": "http", "http": {"path": "/a-b"}}})


def test_a_trigger_without_a_type_is_manual_for_the_validator_and_the_schema() -> None:
    """`trigger: {}` is a manual trigger, as docs/definitions.md says; settings of another type ask for it."""
    model = validate(read_definition((HEAD + "trigger: {}\nnodes:\n  - {id: a, call: 'm:f'}\n").encode(), "wf.yaml"))
    assert model.trigger.kind.value == "manual"
    base = {"flowledger": 1, "workflow": {"id": "wf"}, "nodes": [{"id": "a", "call": "m:f"}]}
    assert _schema_check(base | {"trigger": {}})
    assert not _schema_check(base | {"trigger": {"type": "http"}})
    assert problems(HEAD + "trigger: {http: {path: /x}}\nnodes:\n  - {id: a, call: 'm:f'}\n") == [
        "wf.yaml:3:11: trigger.http: `http` settings only apply to `type: http`; add `type: http`, or remove them"
    ]


# --- long strings ---------------------------------------------------------------------------------------------------


class _CountingStr(str):
    """A string that counts the characters its slices and counts go over (the work of cutting it)."""

    scanned = 0

    def __getitem__(self, key: Any) -> str:
        part = str.__getitem__(self, key)
        _CountingStr.scanned += len(part)
        return part

    def count(self, *args: Any) -> int:
        _CountingStr.scanned += len(self)
        return str.count(self, *args)


def test_a_long_with_string_is_cut_into_literals_in_linear_work() -> None:
    """Cutting a 200,000-character string into literals goes over it a bounded number of times (not once a piece
    as it did, quadratic), and the pieces still join into the string."""
    text = _CountingStr(textwrap.fill('It\'s a "quoted" word and more. ' * 6500, 10**9))
    _CountingStr.scanned = 0
    code = _literals.literal(text, indent=2)
    assert _CountingStr.scanned <= 10 * len(text)  # cut once, made into literals twice
    assert eval(code) == str(text)  # the generator's own literal, made to be evaluated
