"""``@task``, ``script``, ``shell`` and ``spark_submit``: frozen, validated task definitions.

A decorated function is still a plain function: called outside a pipeline it runs at once (its
``output()`` then points at the final targets). Called inside a ``@pipeline`` it records a node
of the graph and returns a ``Promise``; nothing executes.
"""

from __future__ import annotations

import contextvars
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from conveyor import params as P
from conveyor.errors import DefinitionError, TargetError
from conveyor.resources import Resources
from conveyor.targets import FileTarget, Output, TableTarget, templates

Kind = Literal["function", "script", "shell", "spark_submit"]
Leaf = str | Output  # a path or URL template, or a target (TableTarget) with templates inside
OutputSpec = Leaf | Sequence[Leaf] | Mapping[str, Leaf] | None
RESERVED = frozenset({"after", "output"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

_output: contextvars.ContextVar[Any] = contextvars.ContextVar("conveyor_output")


def output(*, final: bool = False) -> Any:
    """The running task's output target(s): one target, a list or a dict, as declared.

    While the task runs under Conveyor these are staged: files under temporary names, renamed
    into place when it returns; table targets as a ``transaction()`` committed with its marker
    when it returns. ``final=True`` gives the targets as they will be (to link to, not to write).
    """
    try:
        staged, finals = _output.get()
        if finals is None and staged is None:
            raise LookupError
        return finals if final else staged
    except LookupError:
        raise TargetError("output() is only available while a task declared with output= runs") from None


def _seconds(value: float | timedelta | None, owner: str, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise DefinitionError(f"{owner}: {what} must be seconds >= 0 or a timedelta, got {value!r}")
    return float(value)


def _template_fields(template: str, owner: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DefinitionError(f"{owner}: bad output template {template!r}: {exc}") from None
    out = set()
    for _, name, _, _ in parsed:
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not root or root.isdigit():
            raise DefinitionError(
                f"{owner}: output template {template!r} needs named fields like {{day}}, got {{{name}}}"
            )
        out.add(root)
    return out


def _leaves(spec: OutputSpec) -> list[Leaf]:
    if spec is None:
        return []
    if isinstance(spec, str | Output):
        return [spec]
    if isinstance(spec, Mapping):
        return list(spec.values())
    return list(spec)


def _templates(spec: OutputSpec) -> list[str]:
    """The template strings of an output spec (paths, and the templates inside targets)."""
    return [t for leaf in _leaves(spec) for t in ([leaf] if isinstance(leaf, str) else leaf.templates())]


@dataclass(frozen=True, slots=True, eq=False)
class TaskDef:
    """A task's frozen definition."""

    name: str
    kind: Kind
    params: tuple[P.Param, ...]
    fn: Callable[..., Any] | None = None
    command: tuple[str, ...] | str = ()
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    resources: Resources = field(default_factory=Resources)
    output: OutputSpec = None
    priority: int = 0
    tags: tuple[str, ...] = ()
    param_names: frozenset[str] = frozenset()
    executor: str | None = None  # where its attempts run (a name in ``conveyor.executors``); None: the run's
    options: tuple[str, ...] = ()  # spark_submit: spark-submit's options before the script (templates)
    network: bool = False  # on engines that isolate attempts (containers): it may reach the network

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    @property
    def origin(self) -> str:
        if self.fn is not None:
            return f"{self.fn.__module__}:{self.fn.__qualname__}"
        return self.command if isinstance(self.command, str) else " ".join(self.command)

    def __call__(self, *args: Any, after: Any = None, **kwargs: Any) -> Any:
        from conveyor.graph import current_builder

        builder = current_builder()
        values = self._named(args, kwargs)
        if builder is not None:
            return builder.record(self, values, after)
        if after is not None:
            raise DefinitionError(f"task {self.name}: after= only means something inside a pipeline")
        bound = P.bind(f"task {self.name}", self.params, values, opaque=True)
        out = self.render_output(bound)
        return self.execute(bound, out, out)

    def _named(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.params):
            raise DefinitionError(
                f"task {self.name} takes {len(self.params)} parameters but got {len(args)} positional"
            )
        values = dict(kwargs)
        for p, a in zip(self.params, args, strict=False):
            if p.name in values:
                raise DefinitionError(f"task {self.name}: parameter {p.name!r} given twice")
            values[p.name] = a
        return values

    def render_output(self, values: Mapping[str, Any]) -> Any:
        """The task's output targets for these parameter values, shaped like its ``output=``."""
        spec = self.output
        if spec is None:
            return None

        def one(leaf: Leaf) -> Output:
            try:
                if isinstance(leaf, Output):
                    return leaf.render(values)
                return FileTarget(templates.render(leaf, values, f"task {self.name}"))
            except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
                what = f"output template {leaf!r}" if isinstance(leaf, str) else f"output {leaf!r}"
                raise TargetError(
                    f"task {self.name}: {what} cannot be formatted with {dict(values)!r}: {exc}"
                ) from None

        if isinstance(spec, str | Output):
            return one(spec)
        if isinstance(spec, Mapping):
            return {k: one(v) for k, v in spec.items()}
        return [one(t) for t in spec]

    def execute(self, values: Mapping[str, Any], out: Any, final: Any = None) -> Any:
        """Run the task body here, with ``output()`` pointing at ``out`` (staged targets)."""
        token = _output.set((out, final))
        try:
            if self.kind == "function" and self.executor == "spark":
                from conveyor.executors.spark import call

                return call(self, values)  # with its SparkSession; Spark's failures in one line
            if self.kind == "function":
                assert self.fn is not None
                return self.fn(**values)
            if self.kind == "spark_submit":
                from conveyor.executors.spark_submit import run_submit

                return run_submit(self, values, out)
            from conveyor.runner import run_command

            return run_command(self, values, out)
        finally:
            _output.reset(token)


def _check_common(
    owner: str,
    params: tuple[P.Param, ...],
    retries: int,
    output: OutputSpec,
    priority: int,
) -> None:
    names = {p.name for p in params}
    clash = sorted(names & RESERVED)
    if clash:
        raise DefinitionError(f"{owner}: parameter name {clash[0]!r} is reserved; rename it")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise DefinitionError(f"{owner}: retries must be a whole number >= 0, got {retries!r}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise DefinitionError(f"{owner}: priority must be a whole number, got {priority!r}")
    if output is not None and not isinstance(output, str | Output | Sequence | Mapping):
        raise DefinitionError(
            f"{owner}: output must be a path template or a target, a list or a dict of them"
        )
    for leaf in _leaves(output):
        if not isinstance(leaf, str | Output):
            raise DefinitionError(f"{owner}: outputs are path templates or targets, got {leaf!r}")
    for template in _templates(output):
        if not isinstance(template, str) or not template:
            raise DefinitionError(f"{owner}: output templates must be non-empty strings, got {template!r}")
        unknown = sorted(_template_fields(template, owner) - names)
        if unknown:
            raise DefinitionError(
                f"{owner}: output template {template!r} uses {{{unknown[0]}}} which is not a "
                f"parameter; it has {', '.join(sorted(names)) or 'no parameters'}"
            )


def _check_name(name: str, owner: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            f"{owner}: name {name!r} must start with a letter and use letters, digits, _ . -"
        )
    return name


_OPTIONS = frozenset(
    {"retries", "retry_delay", "timeout", "resources", "output", "priority", "tags", "executor"}
)


def _check_options(options: Mapping[str, Any], owner: str) -> None:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise DefinitionError(
            f"{owner}: unknown option {unknown[0]!r}; the options are {', '.join(sorted(_OPTIONS))}"
        )


def _make(
    *,
    name: str,
    kind: Kind,
    params: tuple[P.Param, ...],
    fn: Callable[..., Any] | None = None,
    command: tuple[str, ...] | str = (),
    retries: int = 0,
    retry_delay: float | timedelta = 1.0,
    timeout: float | timedelta | None = None,
    resources: Mapping[str, Any] | None = None,
    output: OutputSpec = None,
    priority: int = 0,
    tags: Sequence[str] = (),
    executor: str | None = None,
    options: Sequence[str] = (),
    network: bool = False,
) -> TaskDef:
    owner = f"task {name}"
    _check_name(name, owner)
    if executor is not None:
        _check_name(executor, f"{owner}: executor")
    _check_common(owner, params, retries, output, priority)
    if kind != "function" and any(isinstance(leaf, TableTarget) for leaf in _leaves(output)):
        raise DefinitionError(
            f"{owner}: a table target is written in a transaction the task holds; only a @task "
            "function can write one (a script or command cannot join it)"
        )
    return TaskDef(
        name=name,
        kind=kind,
        params=params,
        fn=fn,
        command=command,
        retries=retries,
        retry_delay=_seconds(retry_delay, owner, "retry_delay") or 0.0,
        timeout=_seconds(timeout, owner, "timeout"),
        resources=Resources.parse(resources, owner),
        output=output if isinstance(output, str | Output | Mapping | None) else tuple(output),
        priority=priority,
        tags=tuple(tags),
        param_names=frozenset(p.name for p in params),
        executor=executor,
        options=tuple(options),
        network=bool(network),
    )


def task(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float | timedelta = 1.0,
    timeout: float | timedelta | None = None,
    resources: Mapping[str, Any] | None = None,
    output: OutputSpec = None,
    priority: int = 0,
    tags: Sequence[str] = (),
    executor: str | None = None,
    network: bool = False,
) -> Any:
    """Make a function a task. Use bare (``@task``) or with options (``@task(retries=2)``).

    ``executor``: where its attempts run (``"local"``, ``"dask"``, ``"ray"``, ``"spark"``,
    ``"podman"``, ``"kubernetes"``, ``"htcondor"`` or a third party's), instead of the run's
    executor. With ``executor="spark"``, a parameter named ``spark`` (or annotated
    ``SparkSession``) receives the worker's session; it is not one of the task's parameters.

    ``network``: on engines that isolate attempts (a container has no network by default), it
    may reach the network. Local workers, Dask, Ray and Spark do not isolate."""

    def wrap(f: Callable[..., Any]) -> TaskDef:
        if not callable(f):
            raise DefinitionError(f"@task decorates a function, got {f!r}")
        tname = name or f.__name__
        skip = None
        if executor == "spark":
            from conveyor.executors.spark import session_parameter

            skip = session_parameter(f)
        return _make(
            name=tname,
            kind="function",
            params=P.params_of(f, f"task {tname}", skip=skip),
            fn=f,
            retries=retries,
            retry_delay=retry_delay,
            timeout=timeout,
            resources=resources,
            output=output,
            priority=priority,
            tags=tags,
            executor=executor,
            network=network,
        )

    return wrap(fn) if fn is not None else wrap


def _placeholder_params(
    texts: Sequence[str], types: Mapping[str, Any] | None, owner: str
) -> tuple[P.Param, ...]:
    names: list[str] = []
    for text in texts:
        for f in sorted(_template_fields(text, owner)):
            if f not in names and f != "output":
                names.append(f)
    types = dict(types or {})
    extra = sorted(set(types) - set(names))
    if extra:
        raise DefinitionError(f"{owner}: params names {extra[0]!r}, which no {{placeholder}} uses")
    return tuple(P.Param(n, P.param_type(types.get(n, Any))) for n in names)


def script(
    path: str | Path,
    args: Sequence[str] = (),
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    **options: Any,
) -> TaskDef:
    """An existing Python script as a task, run in a subprocess with this interpreter.

    ``{placeholders}`` in ``args`` are the task's parameters (typed by ``params``, else any
    value); ``{output}`` is the path of the (staged) output target.
    """
    tname = name or Path(path).stem
    owner = f"task {tname}"
    _check_options(options, owner)
    texts = [str(a) for a in args]
    ps = _placeholder_params(texts + _templates(options.get("output")), params, owner)
    _check_output_placeholder(texts, options.get("output"), owner)
    return _make(name=tname, kind="script", params=ps, command=(str(path), *texts), **options)


def shell(command: str, *, name: str, params: Mapping[str, Any] | None = None, **options: Any) -> TaskDef:
    """A shell command as a task; ``{placeholders}`` are parameters, shell-quoted when filled."""
    owner = f"task {name}"
    _check_options(options, owner)
    ps = _placeholder_params([command, *_templates(options.get("output"))], params, owner)
    _check_output_placeholder([command], options.get("output"), owner)
    return _make(name=name, kind="shell", params=ps, command=command, **options)


def spark_submit(
    path: str | Path,
    args: Sequence[str] = (),
    *,
    conf: Mapping[str, Any] | None = None,
    name: str | None = None,
    master: str | None = None,
    params: Mapping[str, Any] | None = None,
    **options: Any,
) -> TaskDef:
    """An existing PySpark script as a task, run with ``spark-submit`` (pyspark's own).

    ``conf``: Spark settings (``--conf k=v``), after those of ``[executor.spark]`` and the
    task's resources; ``master``: instead of the executor's; ``{placeholders}`` in ``args`` and
    in conf values are the task's parameters, ``{output}`` the staged output target's path.
    The task's attempts run on the ``spark`` executor unless ``executor=`` says otherwise.
    """
    tname = name or Path(path).stem
    owner = f"task {tname}"
    _check_options(options, owner)
    texts = [str(a) for a in args]
    submit: list[str] = [] if master is None else ["--master", str(master)]
    submit += ["--name", tname]
    for k, v in (conf or {}).items():
        submit += ["--conf", f"{k}={'true' if v is True else 'false' if v is False else v}"]
    ps = _placeholder_params(texts + submit + _templates(options.get("output")), params, owner)
    _check_output_placeholder(texts + submit, options.get("output"), owner)
    options.setdefault("executor", "spark")
    return _make(
        name=tname, kind="spark_submit", params=ps, command=(str(path), *texts), options=submit, **options
    )


def _check_output_placeholder(texts: Sequence[str], output: OutputSpec, owner: str) -> None:
    uses = any("output" in _template_fields(t, owner) for t in texts)
    if uses and output is None:
        raise DefinitionError(f"{owner}: the command uses {{output}} but the task declares no output=")
