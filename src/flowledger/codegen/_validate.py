"""Check a parsed definition and build its typed model.

Every check adds to one :class:`~flowledger.codegen._problems.Problems`
collector instead of stopping, so a user sees all problems at once. Ids and
import paths are validated, never renamed; strings that are not identifiers
stay free text and reach generated code only as literals.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from flowledger._run_context import CONTEXT_MAX_CHARS, context_problem, project_problem
from flowledger._wire import RESUME_APP_PATH, CaptureMode
from flowledger.codegen._load import Document
from flowledger.codegen._model import (
    FORMAT_VERSION,
    CallTarget,
    Definition,
    EnvRef,
    HttpMethod,
    HttpSpec,
    Identifier,
    JsonValue,
    Limits,
    Map,
    NodeDefinition,
    OnError,
    Retry,
    Trigger,
    TriggerType,
    WithValue,
    WorkflowInfo,
)
from flowledger.codegen._problems import Path, Problems, did_you_mean, shown_key
from flowledger.workflow import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_S,
    DEFAULT_EFFECT,
    DEFAULT_HTTP_METHOD,
    DEFAULT_MAP_CONCURRENCY,
    DEFAULT_MAX_BACKOFF_S,
    DEFAULT_ON_ERROR,
)

__all__ = ["validate"]

WORKFLOW_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
NODE_ID: Final = re.compile(r"[a-z][a-z0-9_]*\Z")
PY_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
"""An RFC 9110 token: the only header names HTTP can carry."""
HEADER_VALUE: Final = re.compile(r"(?:[!-~](?:[ \t!-~]*[!-~])?)?\Z")
"""Visible ASCII, with spaces and tabs only between visible characters: the header values httpx can encode
and h11 sends (it refuses leading or trailing whitespace, line breaks and other control characters)."""
MAX_PORT: Final = 65535
RESERVED_ROUTE_PREFIX: Final = RESUME_APP_PATH.rsplit("/", 1)[0]
"""``/_flowledger``: the generated module's own routes (resume) live under it, so a trigger path there would
shadow them."""
MAX_ID_LENGTH: Final = 64
MAX_WORKFLOW_ID_LENGTH: Final = 128
MAX_TEXT_LENGTH: Final = 1024
MAX_JSON_DEPTH: Final = 32
RECEIVER_MAX_NUMBER: Final = 2**53
"""The largest deadline or budget the receiver records: events.v1.schema.json caps the numbers of
``run_started.limits`` (and durations and costs) there, so a larger limit would make every run's first event
refused at run time. Refused here instead, at its place."""
CRON_FIELDS: Final = 5
"""MIN HOUR DAY MONTH WEEKDAY. cronsim also takes a sixth field (seconds), which would fire every second."""

WORKFLOW_KEYS: Final = ("id", "name", "version", "capture")
TOP_KEYS: Final = (
    "flowledger",
    "workflow",
    "trigger",
    "limits",
    "output",
    "nodes",
    "sample_rate",
    "project",
    "agent_id",
    "intent",
)
CONTEXT_KEYS: Final = ("project", "agent_id", "intent")
"""Top-level keys that every run of the workflow carries as its run context (see flowledger._run_context)."""
TRIGGER_KEYS: Final = ("type", "http", "schedule")
TRIGGER_HTTP_KEYS: Final = ("path",)
TRIGGER_SCHEDULE_KEYS: Final = ("every_s", "cron")
LIMITS_KEYS: Final = ("deadline_s", "budget_usd")
NODE_KEYS: Final = (
    "id",
    "call",
    "http",
    "with",
    "needs",
    "retry",
    "timeout_s",
    "when",
    "map",
    "effect",
    "on_error",
    "capture",
)
RETRY_KEYS: Final = ("attempts", "backoff_s", "factor", "max_backoff_s")
MAP_KEYS: Final = ("max_concurrency",)
HTTP_KEYS: Final = ("method", "url", "headers")

_RESERVED_NODE_IDS: Final = frozenset(keyword.kwlist)
"""Node ids that are Python keywords. A node id is only ever a string in the generated module (never a name
there), so builtins (`input`, `sum`) and soft keywords (`match`, `type`) are ids like any other."""


def validate(doc: Document) -> Definition:
    """Return the model of ``doc``, or raise DefinitionError listing every problem."""
    validator = _Validator(doc)
    definition = validator.definition()
    validator.problems.raise_if_any()
    assert definition is not None  # every path that returns None added a problem
    return definition


_YAML11_BOOLS: Final = frozenset({"yes", "no", "on", "off", "y", "n"})


def _is_node_id(text: str) -> bool:
    """Whether ``text`` passes every check of a node id (so that it may be suggested as one)."""
    return bool(NODE_ID.match(text)) and len(text) <= MAX_ID_LENGTH and text not in _RESERVED_NODE_IDS


def _split_url(url: str) -> SplitResult | None:
    """``url``'s parts, or None when it is not one URL: spaces or control characters in it, or a netloc urlsplit
    refuses (an unbalanced ``[`` of an IPv6 address, characters that NFKC normalisation turns into ``/?#@:``)."""
    if not url.isprintable() or any(c.isspace() for c in url):
        return None
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _port_ok(parts: SplitResult) -> bool:
    """Whether the URL has no port or one from 1 to :data:`MAX_PORT`."""
    try:
        port = parts.port
    except ValueError:  # urlsplit refuses ports past 65535 and ones that are not numbers
        return False
    return port is None or 1 <= port <= MAX_PORT


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _quote_list(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


class _Validator:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems = Problems(doc.file)
        self.read_around: tuple[Path, ...] = ()
        """The values the reader found wrong (see :attr:`Document.read_problems`), listed with the validator's
        problems: each was left out, so the validator says nothing of it or what is below it."""
        self.keys_read_around: frozenset[Path] = frozenset()
        """The mappings a key was left out of: the validator says nothing of the mapping itself (a required key
        may be the one left out), only of its other keys."""
        if doc.read_problems is not None:
            self.problems.extend(doc.read_problems)
            self.read_around = tuple(doc.read_problems.places)
            self.keys_read_around = frozenset(doc.read_problems.mappings)
        self.graph_broken = False
        """Set when needs are not a list of ids, name unknown nodes or form a cycle: then sinks say nothing
        useful."""
        self.unplaced_needs: list[tuple[int, tuple[Identifier, ...]]] = []
        """``(index, needs)`` of nodes left out of the graph for their id, checked with the others."""
        self.need_places: dict[tuple[int, str], int] = {}
        """``(node index, need) -> index in the list as written``: a node's needs drop self and duplicate
        needs, so the index among those kept is not where the user wrote the need."""

    # --- reporting ---------------------------------------------------------

    def at(self, path: Path, message: str) -> None:
        """Report a problem with the value at ``path``."""
        if not self._read_around(path):
            self.problems.add(*self.doc.value_mark(path), path, message)

    def at_key(self, path: Path, message: str) -> None:
        """Report a problem with the key that holds ``path`` (said unless the mapping holding it was left out)."""
        if not any(path[: len(place)] == place for place in self.read_around if len(place) < len(path)):
            self.problems.add(*self.doc.key_mark(path), path, message)

    def _read_around(self, path: Path) -> bool:
        """Whether the reader left out what the validator would say of ``path`` (see :attr:`read_around`)."""
        return path in self.keys_read_around or any(path[: len(place)] == place for place in self.read_around)

    # --- shapes ------------------------------------------------------------

    def mapping(
        self, value: Any, path: Path, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.at(path, f"expected a mapping with keys {_quote_list(allowed)}, found {_type_name(value)}")
            return None
        for key in value:
            if key not in allowed:
                close = did_you_mean(key, allowed)
                hint = f" (did you mean `{close}`?)" if close else ""
                self.at_key((*path, key), f"unknown key `{shown_key(key)}`{hint}; allowed keys: {_quote_list(allowed)}")
        for key in required:
            if key not in value:
                self.at(path, f"missing required key `{key}`")
        return {k: v for k, v in value.items() if k in allowed}

    def text(self, value: Any, path: Path, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
        if not isinstance(value, str):
            self.at(path, f"expected a string, found {_type_name(value)}; quote the value")
            return None
        if len(value) > max_length:
            self.at(path, f"the string is {len(value)} characters long; at most {max_length} are allowed")
            return None
        return value

    def number(
        self, value: Any, path: Path, *, minimum: float, exclusive: bool, maximum: int | None = None
    ) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            hint = "; write it without quotes" if isinstance(value, str) and _looks_numeric(value) else ""
            self.at(path, f"expected a number, found {_type_name(value)}{hint}")
            return None
        if value < minimum or (exclusive and value == minimum):
            bound = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
            self.at(path, f"must be {bound}, found {value!r}")
            return None
        if maximum is not None and value > maximum:
            self.at(path, f"must be at most {maximum} (2**53, the largest the receiver records), found {value!r}")
            return None
        return float(value)

    def rate(self, value: Any, path: Path) -> float | None:
        number = self.number(value, path, minimum=0, exclusive=False)
        if number is not None and number > 1:
            self.at(path, f"must be a rate from 0 to 1 (the share of runs kept), found {value!r}")
            return None
        return number

    def integer(self, value: Any, path: Path, *, minimum: int) -> int | None:
        # A whole number written as a float (3.0, 1e3) is that integer, as JSON Schema's `integer` has it.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            found = f"{value!r}, which has a fraction" if isinstance(value, float) else _type_name(value)
            hint = "; write it without quotes" if isinstance(value, str) and _looks_numeric(value) else ""
            self.at(path, f"expected a whole number, found {found}{hint}")
            return None
        if value < minimum:
            self.at(path, f"must be at least {minimum}, found {value}")
            return None
        return value

    def boolean(self, value: Any, path: Path) -> bool | None:
        if not isinstance(value, bool):
            hint = ""
            if isinstance(value, str) and value.lower() in _YAML11_BOOLS and not self.doc.is_json:
                hint = f" ({value!r} is a string in YAML 1.2; write true or false)"
            self.at(path, f"expected true or false, found {_type_name(value)}{hint}")
            return None
        return value

    def enum_value(self, value: Any, path: Path, choices: Sequence[str]) -> str | None:
        if not isinstance(value, str) or value not in choices:
            shown = repr(value) if isinstance(value, str) else _type_name(value)
            close = did_you_mean(value, choices) if isinstance(value, str) else None
            hint = f" (did you mean `{close}`?)" if close else ""
            self.at(path, f"{shown} is not allowed{hint}; use one of {_quote_list(choices)}")
            return None
        return value

    def call_target(self, value: Any, path: Path) -> CallTarget | None:
        text = self.text(value, path)
        if text is None:
            return None
        module, sep, function = text.partition(":")
        parts = module.split(".")
        bad = [p for p in [*parts, function] if not PY_NAME.match(p) or keyword.iskeyword(p)]
        if not sep or not module or not function or bad:
            self.at(
                path,
                f"{text!r} is not an import path; write `module.path:function` "
                "with Python identifiers on both sides of one colon",
            )
            return None
        return CallTarget(Identifier(module), Identifier(function))

    def json_value(self, value: Any, path: Path, depth: int = 0) -> JsonValue:
        if depth > MAX_JSON_DEPTH:
            self.at(path, f"the value is nested deeper than {MAX_JSON_DEPTH} levels")
            return None
        if isinstance(value, dict):
            return {k: self.json_value(v, (*path, k), depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json_value(v, (*path, i), depth + 1) for i, v in enumerate(value)]
        return value  # type: ignore[no-any-return]  # the loaders only produce JSON scalars

    def env_ref(self, value: Any, path: Path) -> EnvRef | None:
        """``{env: NAME}`` if ``value`` is that shape (reporting a bad NAME), else None."""
        if not (isinstance(value, dict) and set(value) == {"env"}):
            return None
        name = value["env"]
        if not isinstance(name, str) or not ENV_NAME.match(name):
            self.at(
                (*path, "env"),
                f"{name!r} is not an environment variable name; use letters, digits and `_`, not starting with a digit",
            )
            return EnvRef(Identifier("_"))
        return EnvRef(Identifier(name))

    # --- sections ----------------------------------------------------------

    def definition(self) -> Definition | None:
        top = self.mapping(self.doc.data, (), TOP_KEYS, required=("flowledger", "workflow", "nodes"))
        if top is None:
            return None
        if "flowledger" in top:
            version = top["flowledger"]
            if isinstance(version, bool) or version != FORMAT_VERSION:
                self.at(
                    ("flowledger",),
                    f"format version {version!r} is not supported; "
                    f"this flowledger reads `flowledger: {FORMAT_VERSION}`",
                )
        workflow = self.workflow(top.get("workflow"), ("workflow",)) if "workflow" in top else None
        trigger = self.trigger(top["trigger"], ("trigger",)) if "trigger" in top else Trigger(TriggerType.MANUAL)
        limits = self.limits(top["limits"], ("limits",)) if "limits" in top else Limits()
        nodes = self.nodes(top["nodes"], ("nodes",)) if "nodes" in top else []
        output = self.output(top.get("output"), nodes)
        sample_rate = self.rate(top["sample_rate"], ("sample_rate",)) if "sample_rate" in top else None
        context = {name: self.context_value(top[name], (name,)) for name in CONTEXT_KEYS if name in top}
        if workflow is None or trigger is None or limits is None or output is None or self.problems:
            return None
        return Definition(
            source_file=self.doc.file,
            sha256=self.doc.sha256,
            workflow=workflow,
            trigger=trigger,
            limits=limits,
            output=output,
            nodes=tuple(nodes),
            sample_rate=sample_rate,
            project=context.get("project"),
            agent_id=context.get("agent_id"),
            intent=context.get("intent"),
        )

    def context_value(self, value: Any, path: Path) -> str | None:
        """A run-context value (``project``, ``agent_id``, ``intent``) as the wire format bounds it."""
        name = str(path[-1])
        text = self.text(value, path, max_length=CONTEXT_MAX_CHARS)
        if text is None:
            return None
        problem = project_problem(name, text) if name == "project" else context_problem(name, text)
        if problem is not None:
            self.at(path, problem)
            return None
        return text

    def workflow(self, value: Any, path: Path) -> WorkflowInfo | None:
        section = self.mapping(value, path, WORKFLOW_KEYS, required=("id",))
        if section is None:
            return None
        workflow_id = None
        if "id" in section:
            workflow_id = self.text(section["id"], (*path, "id"), max_length=MAX_WORKFLOW_ID_LENGTH)
            if workflow_id is not None and not WORKFLOW_ID.match(workflow_id):
                suggestion = re.sub(r"[^a-z0-9_-]+", "-", workflow_id.lower()).strip("-_")
                valid = WORKFLOW_ID.match(suggestion) and len(suggestion) <= MAX_WORKFLOW_ID_LENGTH
                hint = f" (for example `{suggestion}`)" if valid else ""
                self.at(
                    (*path, "id"),
                    f"{workflow_id!r} is not a workflow id; use lowercase letters, digits, `_` and `-`, "
                    f"starting with a letter or digit{hint}",
                )
                workflow_id = None
        name = self.text(section["name"], (*path, "name")) if "name" in section else None
        version = self.text(section["version"], (*path, "version"), max_length=256) if "version" in section else None
        capture = self.capture(section["capture"], (*path, "capture")) if "capture" in section else None
        if workflow_id is None:
            return None
        return WorkflowInfo(id=workflow_id, name=name, version=version, capture=capture)

    def capture(self, value: Any, path: Path) -> CaptureMode | None:
        text = self.enum_value(value, path, [m.value for m in CaptureMode])
        return CaptureMode(text) if text else None

    def trigger(self, value: Any, path: Path) -> Trigger | None:
        section = self.mapping(value, path, TRIGGER_KEYS)
        if section is None:
            return None
        kind: TriggerType | None = TriggerType.MANUAL  # `type` may be left out, as the docs and schema say
        if "type" in section:
            kind_text = self.enum_value(section["type"], (*path, "type"), [k.value for k in TriggerType])
            kind = TriggerType(kind_text) if kind_text else None
        # Each settings section present is checked whatever the type (every problem is listed at once); one
        # that does not match a known type is a problem of its own.
        http_path = self.trigger_http(section["http"], (*path, "http")) if "http" in section else None
        schedule = self.trigger_schedule(section["schedule"], (*path, "schedule")) if "schedule" in section else None
        if kind is None:
            return None
        for other in ("http", "schedule"):
            if other in section and other != kind.value:
                fix = "remove them" if "type" in section else f"add `type: {other}`, or remove them"
                self.at_key((*path, other), f"`{other}` settings only apply to `type: {other}`; {fix}")
        if kind is TriggerType.HTTP:
            if "http" not in section:
                self.at(path, "an http trigger needs `http: {path: /some/path}`")
                return None
            return None if http_path is None else Trigger(kind, http_path=http_path)
        if kind is TriggerType.SCHEDULE:
            if "schedule" not in section:
                self.at(path, "a schedule trigger needs `schedule: {every_s: SECONDS}` or `schedule: {cron: EXPR}`")
                return None
            return schedule
        return Trigger(kind)

    def trigger_http(self, value: Any, path: Path) -> str | None:
        """The route path of an http trigger's settings ``{path: /some/path}``."""
        spec = self.mapping(value, path, TRIGGER_HTTP_KEYS, required=("path",))
        if spec is None or "path" not in spec:
            return None
        where = (*path, "path")
        route = self.text(spec["path"], where)
        if route is None:
            return None
        if not route.startswith("/") or any(c.isspace() or not c.isprintable() or c in "{}" for c in route):
            self.at(
                where,
                f"{route!r} is not a route path; start it with `/` and use no spaces, braces or control characters",
            )
            return None
        if "?" in route or "#" in route:
            self.at(
                where,
                f"{route!r} holds a query or fragment (`?`, `#`), so no request would ever match it; "
                "write the path alone",
            )
            return None
        if "%" in route:  # requests are routed on their decoded path: `/a%20b` would only match `/a%2520b`
            self.at(
                where,
                f"{route!r} holds a percent-escape (`%`), but requests are matched on their decoded path, so no "
                "request would match it as written; write the characters themselves, without spaces",
            )
            return None
        if route == RESERVED_ROUTE_PREFIX or route.startswith(f"{RESERVED_ROUTE_PREFIX}/"):
            self.at(
                where,
                f"{route!r} is under `{RESERVED_ROUTE_PREFIX}/`, where the module's own routes (such as "
                f"`{RESUME_APP_PATH}`) live; choose another path",
            )
            return None
        return route

    def trigger_schedule(self, value: Any, path: Path) -> Trigger | None:
        """A schedule trigger from its settings ``{every_s: SECONDS}`` or ``{cron: EXPR}``."""
        spec = self.mapping(value, path, TRIGGER_SCHEDULE_KEYS)
        if spec is None:
            return None
        if ("every_s" in spec) == ("cron" in spec):
            self.at(path, 'give exactly one of `every_s: SECONDS` or `cron: "MIN HOUR DAY MONTH WEEKDAY"`')
            return None
        if "cron" in spec:
            cron = self.cron(spec["cron"], (*path, "cron"))
            return None if cron is None else Trigger(TriggerType.SCHEDULE, cron=cron)
        every = self.number(spec["every_s"], (*path, "every_s"), minimum=0, exclusive=True)
        return None if every is None else Trigger(TriggerType.SCHEDULE, every_s=every)

    def cron(self, value: Any, path: Path) -> str | None:
        text = self.text(value, path, max_length=256)
        if text is None:
            return None
        try:  # lazy: cronsim is an optional dependency (the codegen extra) that only cron schedules need
            from cronsim import CronSim, CronSimError
        except ImportError:  # pragma: no cover - cronsim ships with the codegen extra
            self.at(path, "cron schedules need the cronsim package: pip install 'flowledger[codegen]'")
            return None
        try:
            fields = len(text.split())
            if fields != CRON_FIELDS:
                raise CronSimError(f"{fields} fields, not {CRON_FIELDS}")
            CronSim(text, datetime.now(UTC))
        except CronSimError as exc:
            self.at(
                path,
                f"{text!r} is not a cron expression ({str(exc).lower()}); "
                "write five fields `MIN HOUR DAY MONTH WEEKDAY`, e.g. `*/5 * * * *` (evaluated in UTC)",
            )
            return None
        return text

    def limits(self, value: Any, path: Path) -> Limits | None:
        section = self.mapping(value, path, LIMITS_KEYS)
        if section is None:
            return None
        deadline = budget = None
        if "deadline_s" in section:
            deadline = self.number(
                section["deadline_s"], (*path, "deadline_s"), minimum=0, exclusive=True, maximum=RECEIVER_MAX_NUMBER
            )
        if "budget_usd" in section:
            budget = self.number(
                section["budget_usd"], (*path, "budget_usd"), minimum=0, exclusive=False, maximum=RECEIVER_MAX_NUMBER
            )
        return Limits(deadline_s=deadline, budget_usd=budget)

    # --- nodes -------------------------------------------------------------

    def nodes(self, value: Any, path: Path) -> list[NodeDefinition]:
        if not isinstance(value, list) or not value:
            found = "an empty list" if value == [] else _type_name(value)
            self.at(path, f"expected a non-empty list of nodes, found {found}")
            return []
        nodes: list[NodeDefinition] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(value):
            node = self.node(item, (*path, index), index)
            if node is None:
                continue
            if node.id in seen:
                self.at(
                    (*path, index, "id"),
                    f"duplicate node id `{node.id}` (first declared at nodes[{seen[node.id]}]); ids must be unique",
                )
                self.unplaced_needs.append((index, node.needs))
                continue
            seen[node.id] = index
            nodes.append(node)
        self.check_needs(nodes, path)
        return nodes

    def node(self, value: Any, path: Path, index: int) -> NodeDefinition | None:
        section = self.mapping(value, path, NODE_KEYS, required=("id",))
        if section is None:
            return None
        node_id = self.node_id(section["id"], (*path, "id")) if "id" in section else None
        call = http = None
        if "call" in section:
            call = self.call_target(section["call"], (*path, "call"))
        if "http" in section:
            http = self.http(section["http"], (*path, "http"))
        if "call" in section and "http" in section:
            self.at_key((*path, "http"), "a node has either `call` or `http`, not both")
            call = http = None
        elif "call" not in section and "http" not in section:
            self.at(path, "a node needs `call: module:function` or `http: {url: ...}`")
        needs = self.needs(section.get("needs", []), (*path, "needs"), node_id, index)
        with_args = self.with_args(section["with"], (*path, "with")) if "with" in section else ()
        if with_args and "http" in section:
            self.at_key((*path, "with"), "`with` passes keyword arguments to a function; http nodes take none")
        retry = self.retry(section["retry"], (*path, "retry")) if "retry" in section else None
        timeout_s = None
        if "timeout_s" in section:
            timeout_s = self.number(section["timeout_s"], (*path, "timeout_s"), minimum=0, exclusive=True)
        when = self.call_target(section["when"], (*path, "when")) if "when" in section else None
        map_spec = self.map_spec(section["map"], (*path, "map")) if "map" in section else None
        effect = bool(self.boolean(section["effect"], (*path, "effect"))) if "effect" in section else DEFAULT_EFFECT
        on_error = DEFAULT_ON_ERROR
        if "on_error" in section:
            text = self.enum_value(section["on_error"], (*path, "on_error"), [e.value for e in OnError])
            on_error = OnError(text) if text else DEFAULT_ON_ERROR
        capture = self.capture(section["capture"], (*path, "capture")) if "capture" in section else None
        if node_id is None:
            self.unplaced_needs.append((index, needs))  # still checked, so that every problem is listed at once
            return None
        return NodeDefinition(
            id=node_id,
            index=index,
            line=self.doc.value_mark(path)[0],
            call=call,
            http=http,
            needs=needs,
            with_args=with_args,
            retry=retry,
            timeout_s=timeout_s,
            when=when,
            map=map_spec,
            effect=effect,
            on_error=on_error,
            capture=capture,
        )

    def node_id(self, value: Any, path: Path) -> Identifier | None:
        text = self.text(value, path, max_length=MAX_ID_LENGTH)
        if text is None:
            return None
        if not NODE_ID.match(text):
            suggestion = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
            if suggestion in _RESERVED_NODE_IDS:
                suggestion += "_step"
            hint = f" (for example `{suggestion}`)" if _is_node_id(suggestion) else ""
            self.at(
                path,
                f"{text!r} is not a node id; use lowercase letters, digits and `_`, starting with a letter{hint}",
            )
            return None
        if text in _RESERVED_NODE_IDS:
            self.at(path, f"`{text}` is a Python keyword; choose another node id, e.g. `{text}_step`")
            return None
        return Identifier(text)

    def needs(self, value: Any, path: Path, node_id: str | None, node_index: int) -> tuple[Identifier, ...]:
        if not isinstance(value, list):
            self.graph_broken = True  # the graph is not what the user meant: sinks would say nothing useful
            self.at(path, f"expected a list of node ids, found {_type_name(value)}")
            return ()
        out: list[Identifier] = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.graph_broken = True
                self.at((*path, index), f"expected a node id, found {_type_name(item)}")
            elif item in out:
                self.at((*path, index), f"`{item}` is listed twice; list each need once")
            elif item == node_id:
                self.at((*path, index), f"node `{item}` cannot need itself")
            else:
                self.need_places[node_index, item] = index
                out.append(Identifier(item))
        return tuple(out)

    def with_args(self, value: Any, path: Path) -> tuple[tuple[Identifier, WithValue], ...]:
        if not isinstance(value, dict):
            self.at(path, f"expected a mapping of keyword arguments, found {_type_name(value)}")
            return ()
        out: list[tuple[Identifier, WithValue]] = []
        for name, item in value.items():
            if not PY_NAME.match(name) or keyword.iskeyword(name):
                self.at_key(
                    (*path, name),
                    f"{name!r} is not a keyword argument name; use a Python identifier that is not a keyword",
                )
                continue
            env = self.env_ref(item, (*path, name))
            out.append((Identifier(name), env if env is not None else self.json_value(item, (*path, name))))
        return tuple(out)

    def retry(self, value: Any, path: Path) -> Retry | None:
        section = self.mapping(value, path, RETRY_KEYS, required=("attempts",))
        if section is None:
            return None
        attempts = None  # missing (reported): the other settings are still checked, every problem listed at once
        if "attempts" in section:
            attempts = self.integer(section["attempts"], (*path, "attempts"), minimum=1)
        backoff = DEFAULT_BACKOFF_S
        factor = DEFAULT_BACKOFF_FACTOR
        max_backoff = DEFAULT_MAX_BACKOFF_S
        if "backoff_s" in section:
            backoff = self.number(section["backoff_s"], (*path, "backoff_s"), minimum=0, exclusive=False) or 0.0
        if "factor" in section:
            factor = self.number(section["factor"], (*path, "factor"), minimum=1, exclusive=False) or 1.0
        if "max_backoff_s" in section:
            max_backoff = (
                self.number(section["max_backoff_s"], (*path, "max_backoff_s"), minimum=0, exclusive=False) or 0.0
            )
        if attempts is None:
            return None
        return Retry(attempts=attempts, backoff_s=backoff, factor=factor, max_backoff_s=max_backoff)

    def map_spec(self, value: Any, path: Path) -> Map | None:
        section = self.mapping(value, path, MAP_KEYS)
        if section is None:
            return None
        limit = DEFAULT_MAP_CONCURRENCY
        if "max_concurrency" in section:
            limit = self.integer(section["max_concurrency"], (*path, "max_concurrency"), minimum=1) or 1
        return Map(max_concurrency=limit)

    def http(self, value: Any, path: Path) -> HttpSpec | None:
        section = self.mapping(value, path, HTTP_KEYS, required=("url",))
        if section is None:
            return None
        method = DEFAULT_HTTP_METHOD
        if "method" in section:
            raw = section["method"]
            text = self.enum_value(
                raw.upper() if isinstance(raw, str) else raw, (*path, "method"), [m.value for m in HttpMethod]
            )
            method = HttpMethod(text) if text else method
        url = self.text(section["url"], (*path, "url"), max_length=4096) if "url" in section else None
        if url is not None:
            parts = _split_url(url)
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                self.at(
                    (*path, "url"),
                    f"{url!r} is not an absolute http(s) URL without spaces, e.g. `https://example.com/hook`",
                )
                url = None
            elif not _port_ok(parts):
                self.at((*path, "url"), f"{url!r} has a bad port; write a port number from 1 to {MAX_PORT}")
                url = None
        headers: list[tuple[str, str | EnvRef]] = []
        if "headers" in section:
            raw_headers = section["headers"]
            if not isinstance(raw_headers, dict):
                self.at(
                    (*path, "headers"), f"expected a mapping of header names to values, found {_type_name(raw_headers)}"
                )
            else:
                for name, item in raw_headers.items():
                    where = (*path, "headers", name)
                    if not HEADER_NAME.match(name):
                        self.at_key(
                            where,
                            f"{name!r} is not an HTTP header name; use ASCII letters, digits and "
                            "!#$%&'*+-.^_`|~, without spaces",
                        )
                        continue
                    env = self.env_ref(item, where)
                    if env is not None:
                        headers.append((name, env))
                        continue
                    header_value = self.text(item, where)
                    if header_value is not None and ("\r" in header_value or "\n" in header_value):
                        self.at(where, "a header value cannot contain line breaks")
                    elif header_value is not None and not HEADER_VALUE.match(header_value):
                        self.at(
                            where,
                            f"{header_value!r:.80} is not a header value HTTP can carry; use visible ASCII "
                            "characters, with spaces or tabs only between them",
                        )
                    elif header_value is not None:
                        headers.append((name, header_value))
        if url is None:
            return None
        return HttpSpec(method=method, url=url, headers=tuple(headers))

    # --- the graph ---------------------------------------------------------

    def check_needs(self, nodes: list[NodeDefinition], path: Path) -> None:
        ids = [n.id for n in nodes]
        known = set(ids)
        # A node left out for its id (not valid, or a duplicate) has its needs checked too; it is in no cycle.
        every = [(n.index, n.needs) for n in nodes] + self.unplaced_needs
        for node_index, needs in sorted(every, key=lambda pair: pair[0]):
            for need in needs:
                if need not in known:
                    self.graph_broken = True
                    close = did_you_mean(need, ids)
                    hint = f" (did you mean `{close}`?)" if close else ""
                    self.at(
                        (*path, node_index, "needs", self.need_places[node_index, need]),
                        f"unknown node `{need}`{hint}; needs must name nodes declared in `nodes`",
                    )
        for cycle in _find_cycles({n.id: [m for m in n.needs if m in known] for n in nodes}):
            self.graph_broken = True
            first = next(n for n in nodes if n.id == cycle[0])
            where = (*path, first.index, "needs", self.need_places[first.index, cycle[1]])
            self.at(where, f"the needs form a cycle: {' -> '.join(cycle)}; remove one of these needs")

    def output(self, value: Any, nodes: list[NodeDefinition]) -> Identifier | None:
        if not nodes:
            return None
        ids = [n.id for n in nodes]
        if value is not None:
            if not isinstance(value, str) or value not in ids:
                shown = repr(value) if isinstance(value, str) else _type_name(value)
                close = did_you_mean(value, ids) if isinstance(value, str) else None
                hint = f" (did you mean `{close}`?)" if close else ""
                self.at(("output",), f"{shown} is not a node of this workflow{hint}; name one node id")
                return None
            return Identifier(value)
        needed = {need for n in nodes for need in n.needs}
        sinks = [n.id for n in nodes if n.id not in needed]
        if len(sinks) == 1:
            return sinks[0]
        if sinks and not self.graph_broken:
            self.at(
                ("nodes",),
                f"{len(sinks)} nodes have no dependents ({_quote_list(sinks)}); "
                "add `output: NODE_ID` to say which one is the workflow's output",
            )
        return None


def _find_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every cycle met by a depth-first search, each once, as a closed path.

    The search keeps its own stack instead of recursing: a valid chain of a few thousand nodes written sink
    first is as deep as it is long, past Python's recursion limit.
    """
    on_path: dict[str, int] = {}
    """Nodes on the current path, with their position in it."""
    done: set[str] = set()
    path: list[str] = []
    pending: list[Iterator[str]] = []
    """For each node on the path, the needs not yet followed."""
    cycles: list[list[str]] = []
    seen_sets: set[frozenset[str]] = set()
    for root in graph:
        if root in done:
            continue
        on_path[root] = 0
        path.append(root)
        pending.append(iter(graph.get(root, ())))
        while pending:
            need = next(pending[-1], None)
            if need is None:
                done.add(path[-1])
                del on_path[path.pop()]
                pending.pop()
            elif need in on_path:
                cycle = [*path[on_path[need] :], need]
                key = frozenset(cycle)
                if key not in seen_sets:
                    seen_sets.add(key)
                    cycles.append(cycle)
            elif need not in done:
                on_path[need] = len(path)
                path.append(need)
                pending.append(iter(graph.get(need, ())))
    return cycles
