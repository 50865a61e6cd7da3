"""Render a validated definition into a Python module, then check the result.

Parse -> typed model -> dumb template: :func:`render` builds a small view of
the model (per node, the keyword arguments of its ``fw.Node(...)`` in a
fixed order, only those that differ from the runtime's defaults) and renders
``workflow.py.jinja`` with ``StrictUndefined``. The environment's
``finalize`` refuses to print anything but generator-made :class:`Code` and
ints, so a template cannot paste a raw definition string into code: values
go through the ``py``/``arg`` filters (literals) and names through
``ident`` (validated identifiers).

After rendering, :func:`check_module` parses the output and refuses it
unless every node of the definition is declared through ``fw.Node`` in the
``WORKFLOW`` passed to the runtime, and ``run``/``__main__`` go through the
runtime's hooks: a template override cannot silently drop instrumentation.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import re
import traceback
from importlib import resources
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any, Final

from flowledger._exceptions import GenerationError
from flowledger._version import __version__
from flowledger.codegen._literals import Code, Construct, literal
from flowledger.codegen._model import Definition, EnvRef, Identifier, NodeDefinition, TriggerType
from flowledger.workflow import DEFAULT_HTTP_METHOD, DEFAULT_ON_ERROR, Retry

if TYPE_CHECKING:  # jinja2 itself is imported lazily, below
    import jinja2

__all__ = ["TEMPLATE_NAME", "check_module", "render"]

TEMPLATE_NAME: Final = "workflow.py.jinja"
_IDENT: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")

# --- the view ---------------------------------------------------------------


def _value(value: Any) -> Any:
    if isinstance(value, EnvRef):
        return Construct("fw.Env", (str(value.name),))
    return value


def _node_fields(node: NodeDefinition) -> list[tuple[str, Any]]:
    fields: list[tuple[str, Any]] = []
    if node.call is not None:
        fields.append(("call", Construct("fw.Call", (str(node.call.module), str(node.call.function)))))
    if node.http is not None:
        http_kwargs: list[tuple[str, Any]] = [("url", node.http.url)]
        if node.http.method is not DEFAULT_HTTP_METHOD:
            http_kwargs.append(("method", node.http.method.value))
        if node.http.headers:
            http_kwargs.append(("headers", {name: _value(v) for name, v in node.http.headers}))
        fields.append(("http", Construct("fw.Http", (), tuple(http_kwargs))))
    if node.needs:
        fields.append(("needs", tuple(str(n) for n in node.needs)))
    if node.with_args:
        fields.append(("kwargs", {str(name): _value(v) for name, v in node.with_args}))
    if node.retry is not None:
        retry_kwargs = tuple((f.name, getattr(node.retry, f.name)) for f in dataclasses.fields(Retry))
        fields.append(("retry", Construct("fw.Retry", (), retry_kwargs)))
    if node.timeout_s is not None:
        fields.append(("timeout_s", node.timeout_s))
    if node.when is not None:
        fields.append(("when", Construct("fw.Call", (str(node.when.module), str(node.when.function)))))
    if node.map is not None:
        fields.append(("map", Construct("fw.Map", (), (("max_concurrency", node.map.max_concurrency),))))
    if node.effect:
        fields.append(("effect", True))
    if node.on_error is not DEFAULT_ON_ERROR:
        fields.append(("on_error", Code(f"fw.OnError.{node.on_error.name}")))
    if node.capture is not None:
        fields.append(("capture", Code(f"fw.CaptureMode.{node.capture.name}")))
    fields.append(("line", node.line))
    return fields


def _workflow_fields(definition: Definition) -> list[tuple[str, Any]]:
    info = definition.workflow
    fields: list[tuple[str, Any]] = [("id", info.id)]
    if info.name is not None:
        fields.append(("name", info.name))
    if info.version is not None:
        fields.append(("version", info.version))
    trigger = definition.trigger
    if trigger.kind is TriggerType.HTTP:
        fields.append(("trigger", Construct("fw.HttpTrigger", (), (("path", trigger.http_path),))))
    elif trigger.kind is TriggerType.SCHEDULE and trigger.cron is not None:
        fields.append(("trigger", Construct("fw.Schedule", (), (("cron", trigger.cron),))))
    elif trigger.kind is TriggerType.SCHEDULE:
        fields.append(("trigger", Construct("fw.Schedule", (), (("every_s", trigger.every_s),))))
    limits = definition.limits
    limit_kwargs = tuple(
        (name, value)
        for name, value in (("deadline_s", limits.deadline_s), ("budget_usd", limits.budget_usd))
        if value is not None
    )
    if limit_kwargs:
        fields.append(("limits", Construct("fw.Limits", (), limit_kwargs)))
    if info.capture is not None:
        fields.append(("capture", Code(f"fw.CaptureMode.{info.capture.name}")))

    if definition.sample_rate is not None:
        fields.append(("sample_rate", definition.sample_rate))
    fields.append(("output", str(definition.output)))
    for name in ("project", "agent_id", "intent"):
        value = getattr(definition, name)
        if value is not None:
            fields.append((name, value))
    return fields


# --- the environment ----------------------------------------------------------


def _finalize(value: Any) -> Any:
    if isinstance(value, Code):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(
        f"a template printed {type(value).__name__} {value!r:.60} directly; "
        "pass values through the `py` or `arg` filter and names through `ident`"
    )


def _py(value: Any) -> Code:
    return literal(value)


def _arg(value: Any, name: str, indent: int) -> Code:
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not a keyword argument name")
    return literal(value, indent=indent, prefix=f"{name}=", suffix=",")


def _ident(value: Any) -> Code:
    if isinstance(value, Identifier) or (isinstance(value, str) and _IDENT.match(value)):
        return Code(value)
    raise ValueError(f"{value!r:.60} is not an identifier; print it with the `py` filter instead")


def environment(templates_dir: str | FsPath | None = None) -> jinja2.Environment:
    """The Jinja environment: the user's templates first (if any), then the packaged ones.

    Environments are cached per directory (Jinja itself reloads a template
    whose file changed), so generating many modules compiles the template once.
    """
    return _environment(None if templates_dir is None else str(FsPath(templates_dir).resolve()))


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: str | None) -> jinja2.Environment:
    # lazy: jinja2 is a heavy dependency of the codegen extra; every `flowledger` command imports this module
    import jinja2

    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.PackageLoader("flowledger", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters["py"] = _py
    env.filters["arg"] = _arg
    env.filters["ident"] = _ident
    return env


def render(definition: Definition, *, templates_dir: str | FsPath | None = None) -> str:
    """The generated module's source for ``definition``; checked by :func:`check_module`."""
    import jinja2  # lazy, as in _environment

    env = environment(templates_dir)
    http_path = definition.trigger.http_path if definition.trigger.kind is TriggerType.HTTP else None
    context = {
        "definition": definition,
        "workflow": definition.workflow,
        "generator_version": __version__,
        "workflow_fields": _workflow_fields(definition),
        "nodes": [{"id": str(n.id), "fields": _node_fields(n)} for n in definition.nodes],
        "http_trigger": http_path is not None,
        "triggers_import": Code("http_app, main" if http_path is not None else "main"),
    }
    where = templates_dir if templates_dir is not None else "the packaged templates"
    try:
        source = env.get_template(TEMPLATE_NAME).render(context)
    except jinja2.TemplateNotFound as exc:
        raise GenerationError([f"{where}: template {exc.name} not found"]) from None
    except jinja2.TemplateSyntaxError as exc:
        raise GenerationError(
            [f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {exc.message}"]
        ) from None
    except Exception as exc:  # a user's template is user input: whatever it raises is a problem with it
        place = _template_place(exc, env) or f"{where}: {TEMPLATE_NAME}"
        raise GenerationError([f"{place}: rendering the template failed: {type(exc).__name__}: {exc}"]) from None
    check_module(source, definition)
    return source


def _template_place(exc: BaseException, env: jinja2.Environment) -> str | None:
    """``file:line`` of the template line that raised ``exc``, or None when no template frame is found.

    Jinja rewrites a rendering error's traceback so that each template frame has the template's file
    and line; the innermost frame in a file of one of the environment's template folders is the place.
    """
    import jinja2  # lazy, as in _environment

    roots = [str(resources.files("flowledger").joinpath("templates"))]
    loaders = env.loader.loaders if isinstance(env.loader, jinja2.ChoiceLoader) else []
    for loader in loaders:
        if isinstance(loader, jinja2.FileSystemLoader):
            roots.extend(loader.searchpath)
    roots = [os.path.join(os.path.abspath(root), "") for root in roots]
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(tuple(roots))]
    if not frames:
        return None
    return f"{frames[-1].filename}:{frames[-1].lineno}"


# --- the check after generation ---------------------------------------------


def _is_fw(node: ast.expr, name: str) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == name
        and isinstance(node.value, ast.Name)
        and node.value.id == "fw"
    )


def _workflow_nodes(tree: ast.Module) -> list[ast.Call] | None:
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and [t.id for t in stmt.targets if isinstance(t, ast.Name)] == ["WORKFLOW"]
            and isinstance(stmt.value, ast.Call)
            and _is_fw(stmt.value.func, "Workflow")
        ):
            for keyword in stmt.value.keywords:
                if keyword.arg == "nodes" and isinstance(keyword.value, ast.Tuple):
                    return [e for e in keyword.value.elts if isinstance(e, ast.Call) and _is_fw(e.func, "Node")]
    return None


def _runs_through_runtime(tree: ast.Module) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.AsyncFunctionDef) and stmt.name == "run":
            for sub in ast.walk(stmt):
                if (
                    isinstance(sub, ast.Call)
                    and _is_fw(sub.func, "execute")
                    and sub.args
                    and isinstance(sub.args[0], ast.Name)
                    and sub.args[0].id == "WORKFLOW"
                ):
                    return True
    return False


def check_module(source: str, definition: Definition) -> None:
    """Refuse ``source`` unless it parses and every node still goes through the runtime's hooks."""
    problems: list[str] = []
    name = "the generated module"
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise GenerationError([f"{name} is not valid Python (line {exc.lineno}: {exc.msg})"]) from None
    declared = _workflow_nodes(tree)
    if declared is None:
        problems.append(f"{name} has no `WORKFLOW = fw.Workflow(..., nodes=(fw.Node(...), ...))` declaration")
        declared = []
    ids: list[Any] = []
    for call in declared:
        first = call.args[0] if call.args else None
        ids.append(first.value if isinstance(first, ast.Constant) else None)
    for node in definition.nodes:
        count = ids.count(str(node.id))
        if count != 1:
            problems.append(
                f"{name} declares node `{node.id}` {count} times through fw.Node; every node must be declared once "
                "so that it runs through the hooks"
            )
    extra = sorted(str(i) for i in ids if i not in {str(n.id) for n in definition.nodes})
    if extra:
        problems.append(f"{name} declares nodes the definition does not have: {', '.join(extra)}")
    if not _runs_through_runtime(tree):
        problems.append(f"{name}'s `async def run` does not call `fw.execute(WORKFLOW, ...)`")
    if problems:
        raise GenerationError(problems)
